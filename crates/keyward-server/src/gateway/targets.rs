//! Static targets: a YAML file of named upstreams, each with its provider, base URL and a
//! reference to its key (a config variable of the vault, an environment variable, or a field of
//! an OpenBao/Vault KV v2 secret: `key_ref`), served at
//! `/gateway/t/{target_id}/{path...}`. For single-tenant setups that want fixed routes.
//!
//! ```yaml
//! org: acme                      # whose gateway tokens may use the targets (per target too)
//! targets:
//!   - id: openai-primary
//!     provider: openai
//!     base_url: https://api.openai.com/v1
//!     secret_key_ref: { store: OPENAI_API_KEY }   # or { env: OPENAI_API_KEY },
//!                                                 # or { vault: "secret/data/providers#openai" }
//! ```
//!
//! The shape Keeptrusts users already have is taken too: `pack:` (its name and version),
//! `providers: { targets: [...] }` with the same target fields (and `model`), and its
//! `policies: { chain: [...] }` with `policy: { NAME: {...} }`: the `audit-logger` policy
//! (`immutable`, `retention_days`, `log_all_access`) is Keyward's audit policy; other policies and
//! other sections are reported as ignored, by name, at every load. Such a file usually names no organization: with one organization in the vault
//! it is that one, otherwise `org:` must be added.
//!
//! Every reference is resolved when the file is loaded, so a missing one fails the start or the
//! reload with a message naming it, and a failed reload leaves the running set in place. The
//! file holds references only; keys are read into memory and never written anywhere.

use std::collections::HashMap;
use std::path::Path;

use keyward_core::provider::AuthStyle;
use keyward_core::{OrgId, Provider};
use keyward_kms::kv::LazyKvReader;
use keyward_store::{AuditPolicy, Vault};
use secrecy::SecretString;
use serde::Deserialize;

use super::key_ref::{KeyRefSpec, Sources};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The default organization of the targets.
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    targets: Vec<TargetSpec>,
}

/// The Keeptrusts shape's sections Keyward reads; any other top-level section is ignored and
/// reported.
#[derive(Debug, Deserialize)]
struct PackFile {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    providers: Option<PackProviders>,
    #[serde(default)]
    policies: Option<serde_yaml_ng::Mapping>,
    #[serde(default)]
    policy: Option<serde_yaml_ng::Mapping>,
}

/// The `audit-logger` policy as the pack writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditLoggerSpec {
    #[serde(default)]
    immutable: bool,
    #[serde(default)]
    retention_days: Option<u32>,
    #[serde(default)]
    log_all_access: bool,
}

/// The policy Keyward implements, by its pack name.
const AUDIT_LOGGER: &str = "audit-logger";

/// The pack's policy chain: the audit-logger policy if the chain runs it, and the names of what
/// else the chain or the `policy:` section names (ignored).
fn pack_policies(
    policies: Option<serde_yaml_ng::Mapping>,
    policy: Option<serde_yaml_ng::Mapping>,
) -> Result<(Option<AuditPolicy>, Vec<String>), String> {
    let mut ignored = Vec::new();
    let mut chain: Vec<String> = Vec::new();
    for (k, v) in policies.unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        if key != "chain" {
            ignored.push(format!("policies.{}", shown_name(key)));
            continue;
        }
        let names = v
            .as_sequence()
            .ok_or("policies.chain must be a list of policy names")?;
        for n in names {
            chain.push(
                n.as_str()
                    .ok_or("policies.chain must be a list of policy names")?
                    .to_owned(),
            );
        }
    }
    let mut audit = None;
    for name in &chain {
        if name != AUDIT_LOGGER {
            ignored.push(format!("policies.chain: {}", shown_name(name)));
        }
    }
    for (k, v) in policy.unwrap_or_default() {
        let name = k.as_str().unwrap_or_default();
        if name != AUDIT_LOGGER {
            ignored.push(format!("policy.{}", shown_name(name)));
            continue;
        }
        if !chain.iter().any(|c| c == AUDIT_LOGGER) {
            ignored.push(format!("policy.{AUDIT_LOGGER} (not in policies.chain)"));
            continue;
        }
        let spec: AuditLoggerSpec = serde_yaml_ng::from_value(v)
            .map_err(|e| format!("policy.{AUDIT_LOGGER}: {}", describe_yaml_error(&e)))?;
        if spec.retention_days == Some(0) {
            return Err(format!(
                "policy.{AUDIT_LOGGER}: retention_days must be 1 or more"
            ));
        }
        audit = Some(AuditPolicy {
            retention_days: spec.retention_days,
            immutable: spec.immutable,
            log_all_access: spec.log_all_access,
        });
    }
    // In the chain without settings: on, with the defaults.
    if audit.is_none() && chain.iter().any(|c| c == AUDIT_LOGGER) {
        audit = Some(AuditPolicy::default());
    }
    Ok((audit, ignored))
}

/// A section's name as reports show it: a name that could be a pasted key is not shown.
fn shown_name(name: &str) -> String {
    if name.len() <= 64 && !looks_like_a_key(name) {
        name.to_owned()
    } else {
        "(a name that is not shown)".to_owned()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackProviders {
    #[serde(default)]
    targets: Vec<TargetSpec>,
}

/// Top-level sections of the Keeptrusts shape that Keyward reads.
const PACK_SECTIONS: [&str; 5] = ["pack", "org", "providers", "policies", "policy"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    id: String,
    provider: String,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    secret_key_ref: Option<KeyRefSpec>,
    /// The model the target is meant for (Keeptrusts' field): shown, not enforced.
    #[serde(default)]
    model: Option<String>,
}

/// One loaded target.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) provider: &'static Provider,
    pub(crate) org: OrgId,
    pub(crate) base_url: String,
    pub(crate) key: Option<SecretString>,
    /// Where the key came from, by name only (`store: OPENAI_API_KEY_V2`, `env: X`,
    /// `vault: secret/data/providers#openai_api_key`).
    pub(crate) reference: Option<String>,
    /// The model it is meant for, if the file says.
    pub(crate) model: Option<String>,
}

/// The loaded set.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    pub(crate) by_id: HashMap<String, std::sync::Arc<Target>>,
    /// Top-level sections of the file that Keyward does not implement, by name.
    pub(crate) ignored: Vec<String>,
    /// The pack's `audit-logger` policy, if its chain runs one.
    pub(crate) audit_policy: Option<AuditPolicy>,
}

/// A target as status and audit show it: never its key.
#[derive(Debug, Clone, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetSummary {
    /// Id (served at `/gateway/t/{id}/...`).
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// Organization whose gateway tokens may use it.
    pub org: String,
    /// Base URL.
    pub base_url: String,
    /// The reference its key was resolved from, by name (`store: VAR`, `env: VAR`,
    /// `vault: MOUNT/data/PATH#FIELD`).
    pub reference: Option<String>,
    /// The model the file names for it, if any.
    pub model: Option<String>,
}

/// What a load of the targets file took.
#[derive(Debug, Clone, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetsLoaded {
    /// The targets now served, by id.
    pub targets: Vec<TargetSummary>,
    /// Sections of the file Keyward does not implement and ignored, by name.
    pub ignored: Vec<String>,
    /// The file's `audit-logger` policy (the pack's `policy: audit-logger:`), if its chain
    /// runs one.
    pub audit_policy: Option<AuditPolicy>,
}

/// Why targets were not loaded; a message names the file, the target and the reference, never
/// a value.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// The server was started without a targets file.
    #[error(
        "no gateway config to load: start keyward serve with --gateway-config FILE (or KEYWARD_GATEWAY_CONFIG)"
    )]
    NoFile,
    /// The file was refused.
    #[error("gateway config {file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads `path` as a server would, without serving it: how many targets, or why it does not
/// load (`keyward doctor`). Its references are read as at a load (a `store:` one is an audited
/// reveal).
pub async fn check_targets_file(path: &Path, vault: &Vault) -> Result<usize, TargetsError> {
    let env = |name: &str| std::env::var(name).ok();
    let kv = LazyKvReader::new(keyward_kms::process_env);
    Ok(Targets::load(path, vault, &env, &kv).await?.by_id.len())
}

impl Targets {
    /// Reads, checks and resolves every target of `path`.
    pub(crate) async fn load(
        path: &Path,
        vault: &Vault,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
        kv: &LazyKvReader,
    ) -> Result<Self, TargetsError> {
        let sources = Sources { vault, env, kv };
        let err = |message: String| TargetsError::Invalid {
            file: path.display().to_string(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let yaml_err = |e: serde_yaml_ng::Error| {
            // The parser's message may quote the offending text; its location is enough.
            match e.location() {
                Some(l) => err(format!(
                    "not a valid gateway config (line {}, column {}): {}",
                    l.line(),
                    l.column(),
                    describe_yaml_error(&e)
                )),
                None => err(format!(
                    "not a valid gateway config: {}",
                    describe_yaml_error(&e)
                )),
            }
        };
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(yaml_err)?;
        let sections: Vec<String> = doc
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let is_pack = sections
            .iter()
            .any(|k| matches!(k.as_str(), "pack" | "providers" | "policies" | "policy"));
        let (file, ignored, audit_policy) = if is_pack {
            let pack: PackFile = serde_yaml_ng::from_value(doc).map_err(yaml_err)?;
            let mut ignored: Vec<String> = sections
                .into_iter()
                .filter(|k| !PACK_SECTIONS.contains(&k.as_str()))
                .map(|k| shown_name(&k))
                .collect();
            let (audit_policy, other_policies) =
                pack_policies(pack.policies, pack.policy).map_err(err)?;
            ignored.extend(other_policies);
            let file = File {
                org: pack.org,
                targets: pack.providers.map(|p| p.targets).unwrap_or_default(),
            };
            (file, ignored, audit_policy)
        } else {
            let file: File = serde_yaml_ng::from_value(doc).map_err(yaml_err)?;
            (file, Vec::new(), None)
        };
        // A file without an organization (Keeptrusts' shape has none) is the only one's.
        let only_org = if file.org.is_none() && file.targets.iter().any(|t| t.org.is_none()) {
            match vault.list_orgs().await {
                Ok(orgs) if orgs.len() == 1 => orgs.into_iter().next().map(|o| o.id.to_string()),
                _ => None,
            }
        } else {
            None
        };
        let mut by_id = HashMap::new();
        for (i, spec) in file.targets.into_iter().enumerate() {
            // Messages name what is wrong, and quote a value only when it is plainly a name:
            // a key pasted into the wrong field must not reach a log.
            let id = spec.id.trim().to_owned();
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                || looks_like_a_key(&id)
            {
                return Err(err(format!(
                    "targets[{i}]: the id must be 1 to 64 letters, digits, '-', '_' or '.'"
                )));
            }
            let terr = |m: String| err(format!("target '{id}': {m}"));
            if by_id.contains_key(&id) {
                return Err(terr("the id is used twice".into()));
            }
            let provider = Provider::get(&spec.provider).map_err(|_| {
                let named = spec.provider.len() <= 32
                    && spec
                        .provider
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_');
                terr(if named {
                    format!(
                        "unknown provider '{}' (see `keyward providers`)",
                        spec.provider
                    )
                } else {
                    "provider is not a provider id (see `keyward providers`)".into()
                })
            })?;
            if matches!(
                provider.auth,
                AuthStyle::ServiceAccount | AuthStyle::AwsSigV4
            ) {
                return Err(terr(format!(
                    "the gateway does not sign requests for {}",
                    provider.id
                )));
            }
            let org = spec
                .org
                .or_else(|| file.org.clone())
                .or_else(|| only_org.clone())
                .ok_or_else(|| {
                    terr(
                        "no org, and the vault has more than one organization (or none): set \
                         `org:` on the target or at the top"
                            .into(),
                    )
                })?;
            let org =
                OrgId::new(&org).map_err(|_| terr("org is not an organization slug".into()))?;
            let base_url = spec
                .base_url
                .or_else(|| provider.default_base_url.map(str::to_owned))
                .ok_or_else(|| terr(format!("{} has no default base_url; set one", provider.id)))?;
            let base_url = base_url.trim_end_matches('/').to_owned();
            let valid_url = reqwest::Url::parse(&base_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !valid_url
                || base_url.contains(['?', '#'])
                || keyward_core::secret_like::looks_like_secret(&base_url)
            {
                return Err(terr(
                    "base_url is not an http(s) URL without query or fragment".into(),
                ));
            }
            let (key, reference) = match (&spec.secret_key_ref, provider.auth) {
                (None, AuthStyle::None) => (None, None),
                (None, _) => {
                    return Err(terr(format!(
                        "secret_key_ref is required for {} (store: VAR, env: VAR or vault: MOUNT/data/PATH#FIELD)",
                        provider.id
                    )));
                }
                (Some(r), _) => {
                    let (key, reference) = r.resolve(&org, &sources).await.map_err(terr)?;
                    (Some(key), Some(reference))
                }
            };
            by_id.insert(
                id.clone(),
                std::sync::Arc::new(Target {
                    id,
                    provider,
                    org,
                    base_url,
                    key,
                    reference,
                    model: spec
                        .model
                        .filter(|m| m.len() <= 200 && !looks_like_a_key(m)),
                }),
            );
        }
        Ok(Self {
            by_id,
            ignored,
            audit_policy,
        })
    }

    /// What status and audit show of the set, in id order.
    pub(crate) fn loaded(&self) -> TargetsLoaded {
        TargetsLoaded {
            targets: self
                .ids()
                .iter()
                .filter_map(|id| self.by_id.get(id))
                .map(|t| TargetSummary {
                    id: t.id.clone(),
                    provider: t.provider.id.to_owned(),
                    org: t.org.to_string(),
                    base_url: t.base_url.clone(),
                    reference: t.reference.clone(),
                    model: t.model.clone(),
                })
                .collect(),
            ignored: self.ignored.clone(),
            audit_policy: self.audit_policy,
        }
    }

    /// The ids, sorted.
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.by_id.keys().cloned().collect();
        ids.sort();
        ids
    }
}

/// Whether a name could be a key put in the wrong field: long, and mixing lowercase,
/// uppercase and digits the way random keys do and names (`OPENAI_API_KEY`, `openai-primary`)
/// do not.
pub(super) fn looks_like_a_key(name: &str) -> bool {
    name.len() >= 20
        && name.chars().any(|c| c.is_ascii_lowercase())
        && name.chars().any(|c| c.is_ascii_uppercase())
        && name.chars().any(|c| c.is_ascii_digit())
}

/// The parser's complaint, without any value it quotes from the file (a key pasted into the
/// file by mistake must not be echoed into logs): quoted words that look like field names stay.
fn describe_yaml_error(e: &serde_yaml_ng::Error) -> String {
    let message = e.to_string();
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message.as_str(),
    };
    let mut out = String::new();
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        let Some(len) = after.find(quote) else {
            rest = "";
            break;
        };
        let word = &after[..len];
        if word.len() <= 32 && word.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.push_str(word);
        } else {
            out.push_str("...");
        }
        out.push(quote);
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    out
}
