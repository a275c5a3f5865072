//! The root of trust outside Keyward: a KMS or HSM that wraps Keyward's master keys, so that
//! nothing on Keyward's disk opens without it (DESIGN §3).
//!
//! Keyward generates its master keys (KEKs) itself. A [`Kms`] only wraps and unwraps them: each
//! one is sent to the KMS once to be wrapped, the KMS's ciphertext is stored in the database, and
//! at start every stored ciphertext is unwrapped once into memory. No KMS call is made per
//! request. Every backend binds the key id to the ciphertext ([`aad`]): Transit's
//! `associated_data`, AWS KMS's encryption context, PKCS#11 AES-GCM's additional data, so a
//! wrapped key moved to another id fails to unwrap.
//!
//! Backends, chosen by `KEYWARD_KMS` (see [`open`]):
//!
//! - `transit:` OpenBao or Vault Transit ([`transit`]), over plain HTTP on `reqwest`;
//! - `aws-kms:` AWS KMS ([`aws`]), its JSON protocol signed with `aws-sigv4`, on `reqwest`;
//! - `pkcs11:` an AES key on a PKCS#11 token, an HSM or SoftHSM2 ([`pkcs11`]), through
//!   `cryptoki` (the vendor's module is loaded at run time; AES-GCM `C_Encrypt`/`C_Decrypt`);
//!
//! Beside the master keys, [`kv`] reads provider keys from OpenBao/Vault KV v2 over the same
//! connection code ([`vault`]): a gateway target's `secret_key_ref: {vault: ...}` and
//! `keyward run`'s `keyward://vault:...` references. Its errors are [`kv::KvError`], whose words
//! are about a secret store rather than a KMS.
//!
//! Nothing here logs or returns a secret: tokens, secret ids, PINs and unwrapped keys are
//! `secrecy` or `zeroize` types, and every error names the KMS and the cause, never a credential.

pub mod aws;
pub mod kv;
pub mod pkcs11;
mod spec;
pub mod transit;
pub mod vault;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use keyward_crypto::{KeyId, KeyMaterial};

pub use spec::Spec;

/// The additional data every backend binds a wrapped master key to.
pub fn aad(kid: &KeyId) -> String {
    format!("keyward-kek-v1:{kid}")
}

/// A master key as the KMS wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The KMS's ciphertext, stored as it is.
    pub blob: Vec<u8>,
    /// The version of the KMS key that wrapped it, where the KMS says (Transit `v3` → `3`; an
    /// AWS KMS key's ARN, which changes when the alias moves to a new key).
    pub key_version: Option<String>,
}

/// A key-encryption service: wraps and unwraps Keyward's master keys, and nothing else.
pub trait Kms: Send + Sync + fmt::Debug {
    /// The backend's kind as `KEYWARD_KMS` names it: `transit`, `aws-kms`, `pkcs11`.
    fn kind(&self) -> &'static str;

    /// The KMS key, as stored beside each wrapped master key and shown by
    /// `keyward master-key status` (a Transit key name and mount, an AWS KMS key id or ARN, a
    /// PKCS#11 token and key label). Never secret.
    fn key_name(&self) -> String;

    /// Where the KMS is, for messages: its address or module.
    fn location(&self) -> String;

    /// Wraps `key` under the KMS key, bound to its id.
    fn wrap<'a>(&'a self, key: &'a KeyMaterial) -> BoxFuture<'a, Result<Wrapped, KmsError>>;

    /// Unwraps a master key wrapped under this KMS key for `kid`.
    fn unwrap<'a>(
        &'a self,
        kid: &'a KeyId,
        blob: &'a [u8],
    ) -> BoxFuture<'a, Result<KeyMaterial, KmsError>>;

    /// Wraps again under the KMS key's newest version (after a KMS key rotation). A backend
    /// that can do this without handing the key out (Transit's `rewrap`, KMS's `ReEncrypt`)
    /// does; the others unwrap and wrap.
    fn rewrap<'a>(
        &'a self,
        kid: &'a KeyId,
        blob: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(async move {
            let key = self.unwrap(kid, blob).await?;
            self.wrap(&key).await
        })
    }

    /// The secrets this KMS signs in with (a token, whether given or read from a file; a secret
    /// id; an AWS secret key; a PIN), for Keyward to refuse as a stored value: with the store,
    /// they open every key. Read now (a token file is read again).
    fn guarded_secrets(&self) -> Vec<zeroize::Zeroizing<String>> {
        Vec::new()
    }

    /// The backend and key in one line: `transit key 'keyward-kek' (mount transit) at
    /// http://127.0.0.1:8200`.
    fn describe(&self) -> String {
        format!(
            "{} key {} at {}",
            self.kind(),
            self.key_name(),
            self.location()
        )
    }
}

/// Why a KMS call failed. Messages name the KMS and the cause; never a credential or a key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KmsError {
    /// `KEYWARD_KMS` or the KMS's credentials are not usable as given.
    #[error("KEYWARD_KMS: {0}")]
    Config(String),
    /// The KMS could not be reached, or is not serving (sealed, throttled, 5xx): worth
    /// retrying.
    #[error("the KMS ({kms}) cannot be reached: {cause}")]
    Unreachable {
        /// Which KMS.
        kms: String,
        /// Why.
        cause: String,
    },
    /// The KMS refused Keyward's credentials or their permissions; `cause` says which
    /// permission is missing.
    #[error("the KMS ({kms}) refused: {cause}")]
    Refused {
        /// Which KMS.
        kms: String,
        /// What was refused, and what to grant.
        cause: String,
    },
    /// The KMS answered, but would not wrap or unwrap this key: the KMS key is missing,
    /// disabled, or not the one that wrapped it; or the ciphertext does not open.
    #[error("the KMS ({kms}) could not use its key: {cause}")]
    Rejected {
        /// Which KMS.
        kms: String,
        /// Why.
        cause: String,
    },
}

impl KmsError {
    /// Whether retrying later may help (the KMS is away, not refusing).
    pub fn is_transient(&self) -> bool {
        matches!(self, KmsError::Unreachable { .. })
    }
}

/// Opens the KMS `spec` names (`KEYWARD_KMS`), reading anything it does not say from `env`
/// (`VAULT_ADDR`, `VAULT_TOKEN`, `KEYWARD_PKCS11_PIN`, `AWS_REGION`, ...). Makes no call to the KMS yet.
pub fn open(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Arc<dyn Kms>, KmsError> {
    let spec = Spec::parse(spec)?;
    match spec.kind.as_str() {
        "transit" => Ok(Arc::new(transit::Transit::new(&spec, env)?)),
        "aws-kms" => Ok(Arc::new(aws::AwsKms::new(&spec, env)?)),
        "pkcs11" => Ok(Arc::new(pkcs11::Pkcs11Kms::new(&spec, env)?)),
        other => Err(KmsError::Config(format!(
            "unknown KMS kind '{other}': use transit:, aws-kms: or pkcs11:"
        ))),
    }
}

/// The variables that hold the credentials a `KEYWARD_KMS` spec of this kind signs in with
/// (whatever its settings): with them and the store, the master keys open. `keyward run`
/// withholds them from its command.
pub fn credential_variables(spec: &str) -> &'static [&'static str] {
    match spec.trim().split_once(':').map(|(kind, _)| kind.trim()) {
        Some("transit") => &[
            "VAULT_TOKEN",
            "BAO_TOKEN",
            "VAULT_SECRET_ID",
            "VAULT_ROLE_ID",
        ],
        Some("aws-kms") => &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ],
        Some("pkcs11") => &["KEYWARD_PKCS11_PIN"],
        _ => &[],
    }
}

/// The secrets a `KEYWARD_KMS` spec signs in with, found without calling the KMS: the values
/// of its [`credential_variables`], and what its settings name (a token file, a secret id
/// file, an inline role id, a PIN file). For [`keyward_core`]'s guard, in remote mode too.
pub fn guarded_secrets_of(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<zeroize::Zeroizing<String>> {
    let mut out: Vec<zeroize::Zeroizing<String>> = credential_variables(spec)
        .iter()
        .filter_map(|name| env(name))
        .map(zeroize::Zeroizing::new)
        .collect();
    match Spec::parse(spec) {
        Ok(parsed) if parsed.kind == "pkcs11" => {
            if let Some(pin) = parsed
                .get("pin_file")
                .and_then(|p| std::fs::read_to_string(p).ok())
            {
                out.push(zeroize::Zeroizing::new(pin));
            }
        }
        // Transit and AWS KMS make no call when opened: ask them.
        Ok(_) => {
            if let Ok(kms) = open(spec, env) {
                out.extend(kms.guarded_secrets());
            }
        }
        Err(_) => {}
    }
    out
}

/// This process's environment, for [`open`]: unset and empty are the same.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
