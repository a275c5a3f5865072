//! A static target's `secret_key_ref`, and reading the key it names when the targets file is
//! loaded:
//!
//! ```yaml
//! secret_key_ref: { store: OPENAI_API_KEY }                             # a config variable
//! secret_key_ref: { env: OPENAI_API_KEY }                               # the server's environment
//! secret_key_ref: { vault: "secret/data/providers#openai_api_key" }     # OpenBao/Vault KV v2
//! ```
//!
//! Errors name the reference (`secret_key_ref vault secret/data/providers#openai_api_key: ...`)
//! and why, quoting only what is plainly a name: never the key, nor a Vault token.

use keyward_core::{OrgId, VarName};
use keyward_kms::kv::{KvRef, LazyKvReader};
use keyward_store::Vault;
use secrecy::SecretString;
use serde::Deserialize;

use super::targets::looks_like_a_key;

/// The reference as the file writes it: exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyRefSpec {
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    vault: Option<String>,
}

/// What a key is read from, checked.
enum KeyRef {
    Store(VarName),
    Env(String),
    Vault(KvRef),
}

/// What the loader needs to read keys: the vault (for `store:`), the environment (for `env:`)
/// and the Vault KV reader (for `vault:`).
pub(super) struct Sources<'a> {
    pub(super) vault: &'a Vault,
    pub(super) env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    pub(super) kv: &'a LazyKvReader,
}

const ONE_KIND: &str =
    "secret_key_ref takes exactly one of store: VAR, env: VAR and vault: MOUNT/data/PATH#FIELD";

impl KeyRefSpec {
    /// Checks the reference's form (before anything is read).
    fn check(&self) -> Result<KeyRef, String> {
        match (&self.store, &self.env, &self.vault) {
            (Some(name), None, None) => VarName::new(name)
                .ok()
                .filter(|_| !looks_like_a_key(name))
                .map(KeyRef::Store)
                .ok_or_else(|| "secret_key_ref store: not a variable name (A-Z, 0-9, _)".into()),
            (None, Some(name), None) => {
                let valid = !name.is_empty()
                    && name.len() <= 128
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !looks_like_a_key(name);
                if !valid {
                    return Err("secret_key_ref env: not an environment variable name".into());
                }
                // Keyward's own configuration (the master key above all) is nobody's provider
                // key.
                if keyward_core::env::is_keyward_own(name) {
                    return Err(format!(
                        "secret_key_ref env {name}: Keyward's own settings (KEYWARD_*) cannot be a target's key"
                    ));
                }
                Ok(KeyRef::Env(name.clone()))
            }
            (None, None, Some(text)) => {
                // Checked before parsing: a key pasted here is refused without a word of it.
                if keyward_core::secret_like::looks_like_secret(text) {
                    return Err(
                        "secret_key_ref vault: not a Vault reference (MOUNT/data/PATH#FIELD)"
                            .into(),
                    );
                }
                KvRef::parse(text)
                    .map(KeyRef::Vault)
                    .map_err(|e| format!("secret_key_ref vault: {e}"))
            }
            _ => Err(ONE_KIND.into()),
        }
    }

    /// Checks the reference and reads the key it names for a target of `org`. Answers the key
    /// and the reference by name, as status and audit show it (`store: VAR`, `env: VAR`,
    /// `vault: secret/data/providers#openai_api_key`).
    pub(super) async fn resolve(
        &self,
        org: &OrgId,
        from: &Sources<'_>,
    ) -> Result<(SecretString, String), String> {
        use secrecy::ExposeSecret as _;
        let (key, name) = self.read(org, from).await?;
        // Checked at load, not found by every request: a key goes in a header.
        if key.expose_secret().chars().any(char::is_control) {
            return Err(format!(
                "secret_key_ref {}: the key holds a control character (a line break?), which no header can carry",
                name.replacen(": ", " ", 1)
            ));
        }
        Ok((key, name))
    }

    async fn read(
        &self,
        org: &OrgId,
        from: &Sources<'_>,
    ) -> Result<(SecretString, String), String> {
        match self.check()? {
            KeyRef::Store(var) => {
                let found = from
                    .vault
                    .get_var(&var, Some(org), true, "gateway:config")
                    .await
                    .map_err(|e| match e {
                        keyward_store::VaultError::NotFound(_) => format!(
                            "secret_key_ref store {var}: no config variable {var} in organization '{org}' or global"
                        ),
                        other => format!("secret_key_ref store {var}: {other}"),
                    })?;
                let key = found.value.ok_or_else(|| {
                    format!("secret_key_ref store {var}: the variable has no value")
                })?;
                Ok((key, format!("store: {var}")))
            }
            KeyRef::Env(name) => match (from.env)(&name) {
                Some(v) if !v.trim().is_empty() => {
                    Ok((SecretString::from(v), format!("env: {name}")))
                }
                _ => Err(format!(
                    "secret_key_ref env {name}: the environment variable {name} is not set"
                )),
            },
            KeyRef::Vault(r) => {
                let key = from
                    .kv
                    .read(&r)
                    .await
                    .map_err(|e| format!("secret_key_ref vault {r}: {e}"))?;
                Ok((key, format!("vault: {r}")))
            }
        }
    }
}
