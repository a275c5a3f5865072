//! Static targets: a YAML file of named upstreams, each with its provider, base URL and a
//! reference to its key (a config variable of the vault, or an environment variable), served at
//! `/gateway/t/{target_id}/{path...}`. For single-tenant setups that want fixed routes.
//!
//! ```yaml
//! org: acme                      # whose gateway tokens may use the targets (per target too)
//! targets:
//!   - id: openai-primary
//!     provider: openai
//!     base_url: https://api.openai.com/v1
//!     secret_key_ref: { store: OPENAI_API_KEY }   # or { env: OPENAI_API_KEY }
//! ```
//!
//! Every reference is resolved when the file is loaded, so a missing one fails the start or the
//! reload with a message naming it, and a failed reload leaves the running set in place. The
//! file holds references only; keys are read into memory and never written anywhere.

use std::collections::HashMap;
use std::path::Path;

use keyward_core::provider::AuthStyle;
use keyward_core::{OrgId, Provider, VarName};
use keyward_store::Vault;
use secrecy::SecretString;
use serde::Deserialize;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRefSpec {
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    env: Option<String>,
}

/// One loaded target.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) provider: &'static Provider,
    pub(crate) org: OrgId,
    pub(crate) base_url: String,
    pub(crate) key: Option<SecretString>,
}

/// The loaded set.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    pub(crate) by_id: HashMap<String, std::sync::Arc<Target>>,
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

impl Targets {
    /// Reads, checks and resolves every target of `path`.
    pub(crate) async fn load(
        path: &Path,
        vault: &Vault,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self, TargetsError> {
        let err = |message: String| TargetsError::Invalid {
            file: path.display().to_string(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let file: File = serde_yaml_ng::from_str(&text).map_err(|e| {
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
        })?;
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
                .ok_or_else(|| terr("no org: set `org:` on the target or at the top".into()))?;
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
            let key = match (spec.secret_key_ref, provider.auth) {
                (None, AuthStyle::None) => None,
                (None, _) => {
                    return Err(terr(format!(
                        "secret_key_ref is required for {} (store: VAR or env: VAR)",
                        provider.id
                    )));
                }
                (Some(r), _) => Some(match (r.store, r.env) {
                    (Some(name), None) => {
                        let var = VarName::new(&name)
                            .ok()
                            .filter(|_| !looks_like_a_key(&name))
                            .ok_or_else(|| {
                                terr(
                                    "secret_key_ref store: not a variable name (A-Z, 0-9, _)"
                                        .into(),
                                )
                            })?;
                        let found = vault
                            .get_var(&var, Some(&org), true, "gateway:config")
                            .await
                            .map_err(|e| match e {
                                keyward_store::VaultError::NotFound(_) => terr(format!(
                                    "secret_key_ref store {name}: no config variable {name} in organization '{org}' or global"
                                )),
                                other => terr(format!("secret_key_ref store {name}: {other}")),
                            })?;
                        found.value.ok_or_else(|| {
                            terr(format!(
                                "secret_key_ref store {name}: the variable has no value"
                            ))
                        })?
                    }
                    (None, Some(name)) => {
                        let valid = !name.is_empty()
                            && name.len() <= 128
                            && !name.starts_with(|c: char| c.is_ascii_digit())
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !looks_like_a_key(&name);
                        if !valid {
                            return Err(terr(
                                "secret_key_ref env: not an environment variable name".into(),
                            ));
                        }
                        // Keyward's own configuration (the master key above all) is nobody's
                        // provider key.
                        if name.starts_with("KEYWARD_") {
                            return Err(terr(format!(
                                "secret_key_ref env {name}: Keyward's own settings (KEYWARD_*) cannot be a target's key"
                            )));
                        }
                        match env(&name) {
                            Some(v) if !v.trim().is_empty() => SecretString::from(v),
                            _ => {
                                return Err(terr(format!(
                                    "secret_key_ref env {name}: the environment variable {name} is not set"
                                )));
                            }
                        }
                    }
                    _ => {
                        return Err(terr(
                            "secret_key_ref takes exactly one of store: VAR and env: VAR".into(),
                        ));
                    }
                }),
            };
            by_id.insert(
                id.clone(),
                std::sync::Arc::new(Target {
                    id,
                    provider,
                    org,
                    base_url,
                    key,
                }),
            );
        }
        Ok(Self { by_id })
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
fn looks_like_a_key(name: &str) -> bool {
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
