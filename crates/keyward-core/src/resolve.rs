//! Resolution rules (DESIGN §4): which credential answers, in what order, and what the error
//! says when none does. The store crate runs these rules against its data.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;
use serde::Serialize;

use crate::CoreError;
use crate::credential::Modality;
use crate::ids::{CredentialId, CredentialName, OrgId};
use crate::provider::{Provider, SecretKind};

/// How to choose among several active credentials of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Always the lowest `priority` number (ties: the oldest); the others are failovers.
    #[default]
    Priority,
    /// Take turns, in priority order.
    RoundRobin,
    /// Random, in proportion to `weight`.
    Weighted,
}

impl Strategy {
    /// Its name, as stored and as `FromStr` reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::RoundRobin => "round_robin",
            Strategy::Weighted => "weighted",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "priority" => Ok(Strategy::Priority),
            "round_robin" | "round-robin" => Ok(Strategy::RoundRobin),
            "weighted" => Ok(Strategy::Weighted),
            _ => Err(CoreError::InvalidInput(format!(
                "unknown strategy {}; use priority, round_robin or weighted",
                crate::secret_like::shown(s)
            ))),
        }
    }
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    /// The organization.
    pub org: OrgId,
    /// The provider.
    pub provider: &'static Provider,
    /// Only the credential with this name.
    pub name: Option<CredentialName>,
    /// Only credentials usable for this modality.
    pub modality: Option<Modality>,
    /// How to pick among several; `None` for the organization's own setting.
    pub strategy: Option<Strategy>,
    /// Whether the process environment is the fallback.
    pub env_fallback: EnvFallback,
}

/// Whether a resolution may fall back to the process environment (`OPENAI_API_KEY`, ...) when
/// the organization has no active credential: one rule for the CLI, the library, the server
/// and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFallback {
    /// Never: a `keyward://` reference, `--no-env-fallback`, a credential asked for by name.
    Off,
    /// As the organization's setting says, or `default` where it says nothing: on for the CLI
    /// and the library, the server's `--env-fallback` (off unless given) for a server.
    Org {
        /// The caller's default.
        default: bool,
    },
}

impl EnvFallback {
    /// Whether the fallback applies, given the organization's setting.
    pub fn applies(self, org_setting: Option<bool>) -> bool {
        match self {
            EnvFallback::Off => false,
            EnvFallback::Org { default } => org_setting.unwrap_or(default),
        }
    }
}

impl ResolveRequest {
    /// A request with the defaults: any name and modality, the organization's strategy, env
    /// fallback on unless the organization turned it off.
    pub fn new(org: OrgId, provider: &'static Provider) -> Self {
        Self {
            org,
            provider,
            name: None,
            modality: None,
            strategy: None,
            env_fallback: EnvFallback::Org { default: true },
        }
    }
}

/// Where a resolved secret came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A stored credential.
    Vault {
        /// Its id.
        id: CredentialId,
        /// Its name.
        name: CredentialName,
    },
    /// The Keyward process's own environment.
    Environment {
        /// The variable read.
        variable: String,
    },
}

/// A resolved credential: the secret and the public fields a client needs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The provider.
    pub provider: &'static Provider,
    /// Where it came from.
    pub source: Source,
    /// The secret (absent for providers that need none, such as a local Ollama).
    pub secret: Option<SecretString>,
    /// Public fields, with the provider's default base URL filled in.
    pub fields: BTreeMap<String, String>,
}

impl Resolved {
    /// The provider config object every surface answers a resolution with (HTTP
    /// `/api/v1/resolve`, `keyward resolve --json`, locally or remotely): the public fields at
    /// the top (`base_url`, `endpoint`, ...), `provider`, `api_key`, and where it came from
    /// (`source`: `vault` with `credential_id` and `credential_name`, or `env:VARIABLE`).
    /// It holds the key: only for the caller that asked.
    pub fn config_object(&self) -> serde_json::Value {
        use secrecy::ExposeSecret as _;
        use serde_json::{Value, json};
        let mut config: serde_json::Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        config.insert("provider".into(), json!(self.provider.id));
        config.insert(
            "api_key".into(),
            self.secret
                .as_ref()
                .map_or(Value::Null, |s| Value::String(s.expose_secret().to_owned())),
        );
        match &self.source {
            Source::Vault { id, name } => {
                config.insert("credential_id".into(), json!(id));
                config.insert("credential_name".into(), json!(name));
                config.insert("source".into(), json!("vault"));
            }
            Source::Environment { variable } => {
                config.insert("source".into(), json!(format!("env:{variable}")));
            }
        }
        Value::Object(config)
    }
}

/// A resolution candidate as the ordering rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Lower first.
    pub priority: i64,
    /// Share under `weighted`.
    pub weight: i64,
    /// Creation time: the tie-breaker.
    pub created_at: i64,
}

/// Orders candidate indexes for `strategy`: the first is the one to use, the rest are the
/// failover order. `turn` is a counter for round robin; `random` a uniform random number for the
/// weighted draw. Both are passed in so that the rule itself is deterministic and testable.
pub fn order(candidates: &[Candidate], strategy: Strategy, turn: u64, random: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..candidates.len()).collect();
    idx.sort_by_key(|&i| (candidates[i].priority, candidates[i].created_at, i));
    if idx.is_empty() {
        return idx;
    }
    match strategy {
        Strategy::Priority => {}
        Strategy::RoundRobin => {
            let n = idx.len() as u64;
            // `turn % n` is below n, which came from a usize.
            idx.rotate_left((turn % n) as usize);
        }
        Strategy::Weighted => {
            let total: u64 = idx
                .iter()
                .map(|&i| candidates[i].weight.max(0) as u64)
                .sum();
            if total > 0 {
                let mut point = random % total;
                let pos = idx
                    .iter()
                    .position(|&i| {
                        let w = candidates[i].weight.max(0) as u64;
                        if point < w {
                            true
                        } else {
                            point -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                let chosen = idx.remove(pos);
                idx.insert(0, chosen);
            }
        }
    }
    idx
}

/// The error when nothing answers a resolution: names the provider, the organization, the
/// variable it looked for, and what an admin can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    /// The provider.
    pub provider: &'static Provider,
    /// Organization.
    pub org: String,
    /// The credential name asked for, if any.
    pub name: Option<String>,
    /// The modality asked for, if any.
    pub modality: Option<Modality>,
    /// The environment variables looked for (in order), when the fallback was on.
    pub env_vars: Vec<String>,
    /// Whether the environment was looked at.
    pub env_fallback: bool,
    /// How many matching credentials were skipped because they could not be decrypted.
    pub undecryptable: usize,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = self.provider.display_name;
        let org = &self.org;
        match &self.name {
            Some(name) => write!(
                f,
                "organization '{org}' has no active {provider} credential named '{name}'"
            )?,
            None => write!(
                f,
                "organization '{org}' has no active {provider} credential"
            )?,
        }
        if let Some(m) = self.modality {
            write!(f, " for {m}")?;
        }
        if self.undecryptable > 0 {
            write!(
                f,
                " ({} could not be decrypted with the configured master keys)",
                self.undecryptable
            )?;
        }
        match (self.env_vars.as_slice(), self.env_fallback) {
            ([], true) => write!(
                f,
                " and {provider} has no environment variable to fall back to"
            )?,
            ([var], true) => write!(f, " and {var} is not set")?,
            ([vars @ .., last], true) => {
                write!(f, " and none of {}, {last} is set", vars.join(", "))?;
            }
            (_, false) => {}
        }
        match &self.name {
            Some(_) => write!(
                f,
                "; check the name, or ask an admin to activate it (keyward cred list --org {org} --provider {})",
                self.provider.id
            ),
            None => write!(
                f,
                "; an admin can add one (keyward cred add --org {org} --provider {}) or activate one",
                self.provider.id
            ),
        }
    }
}

impl std::error::Error for NotFound {}

/// A provider's key from an environment (`get` reads a variable; empty counts as unset): its
/// variables in the registry's order (the SDK's own precedence), the first that is set. The
/// rule the vault's fallback and a remote CLI's own share.
pub fn from_environment(
    provider: &'static Provider,
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<Resolved> {
    let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let first =
        |names: &[&'static str]| names.iter().find_map(|name| get(name).map(|v| (*name, v)));
    let mut fields = BTreeMap::new();
    for f in provider.public_fields {
        if let Some((_, v)) = first(f.env) {
            fields.insert(f.name.to_owned(), v);
        }
    }
    let base_url = first(provider.base_url_env);
    if let Some((_, url)) = &base_url {
        fields.insert("base_url".to_owned(), url.clone());
    }
    let (var, secret) = match provider.secret {
        // No key needed (a local Ollama): the base URL variable is what answers, and a key
        // variable, if set, goes along.
        SecretKind::Optional => {
            let (var, _) = base_url.as_ref()?;
            (
                *var,
                first(provider.secret_env).map(|(_, v)| SecretString::from(v)),
            )
        }
        // The variable names a key file; pass its path on rather than a secret.
        SecretKind::ServiceAccountJson => {
            let (var, path) = first(provider.secret_env)?;
            fields.insert("credentials_file".to_owned(), path);
            (var, None)
        }
        SecretKind::ApiKey | SecretKind::AwsSecretAccessKey => {
            let (var, key) = first(provider.secret_env)?;
            (var, Some(SecretString::from(key)))
        }
    };
    fill_default_base_url(provider, &mut fields);
    Some(Resolved {
        provider,
        source: Source::Environment {
            variable: var.to_owned(),
        },
        secret,
        fields,
    })
}

/// Drops empty fields and fills in the provider's default base URL (from the fields, for
/// Cloudflare's account) when there is none.
pub fn fill_default_base_url(provider: &Provider, fields: &mut BTreeMap<String, String>) {
    fields.retain(|_, v| !v.is_empty());
    if !fields.contains_key("base_url")
        && let Some(url) = provider.default_base_url_for(fields)
    {
        fields.insert("base_url".to_owned(), url);
    }
}
