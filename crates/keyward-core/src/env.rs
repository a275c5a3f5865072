//! The environment variables a resolved credential becomes, for `keyward run`, `keyward env`
//! and the library's `Command` helper. Pure: writing the Vertex key file is the caller's job.

use secrecy::SecretString;

use crate::provider::{Provider, SecretKind};
use crate::resolve::Resolved;

/// The value of one variable.
#[derive(Debug, Clone)]
pub enum EnvValue {
    /// A public value (base URL, endpoint, region, ...).
    Plain(String),
    /// A secret (an API key).
    Secret(SecretString),
    /// A secret that clients read from a file (the Vertex service-account JSON): the caller
    /// writes it to a private temporary file and sets the variable to its path.
    SecretFile(SecretString),
}

/// One variable.
#[derive(Debug, Clone)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: EnvValue,
}

/// The key and base URL variable names of a provider, given a credential's fields: the
/// registry's, or `{PREFIX}_API_KEY` and `{PREFIX}_BASE_URL` / `{PREFIX}_API_BASE` for the
/// compatible providers (the prefix of the SDK they are compatible with when the credential
/// names none).
pub fn key_and_base_url_vars(
    provider: &Provider,
    fields: &std::collections::BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    if provider.is_compatible() {
        let prefix = fields
            .get("env_prefix")
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .or(provider.default_env_prefix());
        return match prefix {
            Some(p) => (
                vec![format!("{p}_API_KEY")],
                vec![format!("{p}_BASE_URL"), format!("{p}_API_BASE")],
            ),
            None => (Vec::new(), Vec::new()),
        };
    }
    let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    (owned(provider.secret_env), owned(provider.base_url_env))
}

/// The variables for one resolved credential, in a stable order: the secret, the base URL,
/// then the provider's public fields.
pub fn provider_env(resolved: &Resolved) -> Vec<EnvVar> {
    let provider = resolved.provider;
    let fields = &resolved.fields;
    let (key_vars, base_vars) = key_and_base_url_vars(provider, fields);
    let mut out = Vec::new();
    let mut push = |name: &str, value: EnvValue| {
        out.push(EnvVar {
            name: name.to_owned(),
            value,
        });
    };
    for var in &key_vars {
        match (&resolved.secret, provider.secret) {
            (Some(secret), SecretKind::ServiceAccountJson) => {
                push(var, EnvValue::SecretFile(secret.clone()));
            }
            (Some(secret), _) => push(var, EnvValue::Secret(secret.clone())),
            // Resolved from Keyward's own environment: the key file's path passes through.
            (None, SecretKind::ServiceAccountJson) => {
                if let Some(path) = fields.get("credentials_file") {
                    push(var, EnvValue::Plain(path.clone()));
                }
            }
            (None, _) => {}
        }
    }
    if let Some(url) = fields.get("base_url").filter(|u| !u.is_empty()) {
        for var in &base_vars {
            push(var, EnvValue::Plain(url.clone()));
        }
    }
    for f in provider.public_fields {
        if let Some(value) = fields.get(f.name).filter(|v| !v.is_empty()) {
            for var in f.env {
                push(var, EnvValue::Plain(value.clone()));
            }
        }
    }
    for (var, value) in provider.fixed_env {
        push(var, EnvValue::Plain((*value).to_owned()));
    }
    out
}
