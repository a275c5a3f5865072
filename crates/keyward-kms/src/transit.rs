//! OpenBao or Vault Transit: `encrypt`, `decrypt` and `rewrap` on one key, bound to the master
//! key's id through `associated_data`.
//!
//! Keyward's policy needs `update` on `MOUNT/encrypt/KEY` and `MOUNT/decrypt/KEY`, nothing else
//! (not `create`: Transit would make a missing key on encrypt). A rewrap after a Transit key
//! rotation is a decrypt and an encrypt: OpenBao's `rewrap` endpoint does not take the
//! `associated_data` that binds each wrapped key to its id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use keyward_crypto::{KeyId, KeyMaterial};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::vault::{SETTINGS, VaultClient};
use crate::{Kms, KmsError, Spec, Wrapped, aad};

/// A Transit key.
#[derive(Debug)]
pub struct Transit {
    client: VaultClient,
    mount: String,
    key: String,
}

impl Transit {
    /// The key `spec` names (`transit:KEY` or `transit:key=KEY,mount=MOUNT,...`).
    pub fn new(spec: &Spec, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        let mut known = SETTINGS.to_vec();
        known.extend(["key", "mount"]);
        spec.only(&known)?;
        let key = spec.require("key", "the Transit key's name")?;
        let mount = spec.get("mount").unwrap_or("transit").trim_matches('/');
        let path_safe = |s: &str| {
            !s.is_empty()
                && s.split('/').all(|part| {
                    !part.is_empty()
                        && part != ".."
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                })
        };
        if !path_safe(key) || key.contains('/') || !path_safe(mount) {
            return Err(KmsError::Config(
                "transit: the key and mount are names of letters, digits, '-', '_' and '.' (a mount may have '/')".into(),
            ));
        }
        Ok(Self {
            client: VaultClient::new(spec, env)?,
            mount: mount.to_owned(),
            key: key.to_owned(),
        })
    }

    fn who(&self) -> String {
        self.describe()
    }

    fn needs(&self, op: &str) -> String {
        format!("`update` on {}/{op}/{}", self.mount, self.key)
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, KmsError> {
        let path = format!("{}/{op}/{}", self.mount, self.key);
        self.client.call(&path, Some(&body)).await.map_err(|e| {
            match e.into_kms(self.who(), &self.needs(op)) {
                KmsError::Rejected { kms, cause } => KmsError::Rejected {
                    kms,
                    cause: explain(&cause),
                },
                other => other,
            }
        })
    }

    fn wrapped(&self, answer: &Value) -> Result<Wrapped, KmsError> {
        let data = answer.get("data");
        let ciphertext = data
            .and_then(|d| d.get("ciphertext"))
            .and_then(Value::as_str)
            .ok_or_else(|| KmsError::Rejected {
                kms: self.who(),
                cause: "the answer holds no ciphertext".into(),
            })?;
        let version = data
            .and_then(|d| d.get("key_version"))
            .and_then(Value::as_u64)
            .map(|v| v.to_string())
            .or_else(|| {
                // `vault:v3:...`
                ciphertext
                    .strip_prefix("vault:v")
                    .and_then(|r| r.split_once(':'))
                    .map(|(v, _)| v.to_owned())
            });
        Ok(Wrapped {
            blob: ciphertext.as_bytes().to_vec(),
            key_version: version,
        })
    }

    fn ciphertext<'b>(&self, blob: &'b [u8]) -> Result<&'b str, KmsError> {
        std::str::from_utf8(blob)
            .ok()
            .filter(|c| c.starts_with("vault:"))
            .ok_or_else(|| KmsError::Rejected {
                kms: self.who(),
                cause: "the stored wrapped key is not a Transit ciphertext".into(),
            })
    }
}

/// Transit's terse refusals, said in words an operator can act on (its own text kept).
fn explain(cause: &str) -> String {
    let plain = if cause.contains("message authentication failed") {
        "the wrapped key does not open under this Transit key: it was wrapped for another key \
         id, under another Transit key, or it is damaged"
    } else if cause.contains("version is too new") || cause.contains("invalid key version") {
        "the wrapped key names a Transit key version this key does not have: another server, or \
         a key made again under the same name"
    } else if cause.contains("too old") {
        "the wrapped key's Transit key version is below the key's min_decryption_version: run \
         `keyward master-key rewrap-kms` before raising it"
    } else if cause.contains("soft-deleted") {
        "the Transit key is soft-deleted (disabled): restore it"
    } else if cause.contains("encryption key not found") {
        "there is no such Transit key (deleted, or another name or mount)"
    } else {
        return cause.to_owned();
    };
    format!("{plain} ({cause})")
}

impl Kms for Transit {
    fn kind(&self) -> &'static str {
        "transit"
    }

    fn key_name(&self) -> String {
        format!("{}/keys/{}", self.mount, self.key)
    }

    fn guarded_secrets(&self) -> Vec<Zeroizing<String>> {
        self.client.secrets()
    }

    fn location(&self) -> String {
        format!(
            "{} ({} sign-in)",
            self.client.address(),
            self.client.auth_name()
        )
    }

    fn wrap<'a>(&'a self, key: &'a KeyMaterial) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(async move {
            let plaintext = Zeroizing::new(STANDARD.encode(key.expose()));
            let body = json!({
                "plaintext": plaintext.as_str(),
                "associated_data": STANDARD.encode(aad(key.kid())),
            });
            let answer = self.call("encrypt", body).await?;
            self.wrapped(&answer)
        })
    }

    fn unwrap<'a>(
        &'a self,
        kid: &'a KeyId,
        blob: &'a [u8],
    ) -> BoxFuture<'a, Result<KeyMaterial, KmsError>> {
        Box::pin(async move {
            let body = json!({
                "ciphertext": self.ciphertext(blob)?,
                "associated_data": STANDARD.encode(aad(kid)),
            });
            let answer = self.call("decrypt", body).await?;
            let encoded = answer
                .pointer("/data/plaintext")
                .and_then(Value::as_str)
                .ok_or_else(|| KmsError::Rejected {
                    kms: self.who(),
                    cause: "the answer holds no plaintext".into(),
                })?;
            let bytes =
                Zeroizing::new(STANDARD.decode(encoded).map_err(|_| KmsError::Rejected {
                    kms: self.who(),
                    cause: "the plaintext is not base64".into(),
                })?);
            KeyMaterial::from_slice(kid.clone(), &bytes).map_err(|e| KmsError::Rejected {
                kms: self.who(),
                cause: e.to_string(),
            })
        })
    }
}
