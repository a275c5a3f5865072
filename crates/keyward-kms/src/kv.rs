//! Provider keys read from an OpenBao or Vault KV v2 engine: a gateway target's
//! `secret_key_ref: {vault: "secret/data/providers#openai_api_key"}` and `keyward run`'s
//! `keyward://vault:secret/data/providers#openai_api_key`.
//!
//! [`KvRef`] is a reference (a secret's path and one of its fields), checked when it is parsed;
//! [`KvReader`] reads one over a [`VaultClient`]; [`LazyKvReader`] makes a reader the first time
//! a reference is read and keeps it, so that every reference of a load (and every later load)
//! shares one sign-in. A [`KvError`] names the server, the path and the field, never the value
//! or a credential.

use std::fmt;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::vault::{VaultClient, refusal};
use crate::{KmsError, Spec};

/// Longest path a reference may name.
const MAX_PATH: usize = 512;
/// Longest field name.
const MAX_FIELD: usize = 128;

/// A field of a KV v2 secret: `MOUNT/data/PATH#FIELD`.
///
/// The path is the API's (`secret/data/providers`); the CLI's form without `data`
/// (`secret/providers`) is read as `MOUNT/data/REST` when the mount is its first segment and no
/// inner segment is `data`. Segments are letters, digits, `_`, `-` and `.` (never `.` or `..`
/// alone: the path must not climb out of the mount), fields likewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRef {
    /// The API path, `MOUNT/data/PATH`.
    path: String,
    field: String,
}

impl KvRef {
    /// Parses `PATH#FIELD`. Errors say what is wrong and never quote the text (a key pasted in
    /// its place must not reach a log).
    pub fn parse(text: &str) -> Result<Self, KvError> {
        let invalid = |why: &str| {
            KvError::Invalid(format!(
                "not a Vault KV reference ({why}): expected MOUNT/data/PATH#FIELD, such as secret/data/providers#openai_api_key"
            ))
        };
        let (path, field) = text
            .trim()
            .split_once('#')
            .ok_or_else(|| invalid("no #FIELD"))?;
        let path = path.trim_matches('/');
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if field.is_empty() || field.len() > MAX_FIELD || !field.chars().all(name_char) {
            return Err(invalid(
                "the field must be 1 to 128 letters, digits, '_', '-' or '.'",
            ));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2 || path.len() > MAX_PATH {
            return Err(invalid("the path must be a mount and a secret under it"));
        }
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == ".." || !s.chars().all(name_char))
        {
            return Err(invalid(
                "each path segment must be letters, digits, '_', '-' or '.', and not '.' or '..'",
            ));
        }
        let last = segments.len() - 1;
        let api_form = segments
            .iter()
            .enumerate()
            .any(|(i, s)| *s == "data" && i > 0 && i < last);
        let path = if api_form {
            path.to_owned()
        } else {
            format!("{}/data/{}", segments[0], segments[1..].join("/"))
        };
        Ok(Self {
            path,
            field: field.to_owned(),
        })
    }

    /// The API path, `MOUNT/data/PATH`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The field.
    pub fn field(&self) -> &str {
        &self.field
    }
}

impl fmt::Display for KvRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.path, self.field)
    }
}

/// Why a KV reference was not read. Messages name the server, the path and the field; never
/// the value, the token or another credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// The reference is not `MOUNT/data/PATH#FIELD`.
    #[error("{0}")]
    Invalid(String),
    /// No server or sign-in is configured (`VAULT_ADDR`, `VAULT_TOKEN`, or `KEYWARD_KMS`'s
    /// `transit:` settings), or what is configured cannot be used.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached, or is not serving (sealed, throttled, 5xx).
    #[error("{server} cannot be reached: {cause}")]
    Unreachable {
        /// Which server.
        server: String,
        /// Why.
        cause: String,
    },
    /// The server refused the token: it is not valid, or its policy lacks `read` on the path.
    #[error("{server} refused: {cause}")]
    Refused {
        /// Which server.
        server: String,
        /// What was refused, and what to grant.
        cause: String,
    },
    /// Nothing is at the path (or its newest version is deleted).
    #[error("no secret at {path} on {server} (is it a KV v2 mount, and the path right?)")]
    NoSecret {
        /// Which server.
        server: String,
        /// The API path.
        path: String,
    },
    /// The secret has no text field of that name.
    #[error("the secret at {path} has no text field '{field}'")]
    NoField {
        /// The API path.
        path: String,
        /// The field.
        field: String,
    },
    /// The field is there but empty (an empty key is never handed out).
    #[error("the field '{field}' of the secret at {path} is empty")]
    Empty {
        /// The API path.
        path: String,
        /// The field.
        field: String,
    },
    /// The field holds what no key is: a NUL byte, or more than 64 KiB.
    #[error("the field '{field}' of the secret at {path} is not usable as a key: {why}")]
    Unusable {
        /// The API path.
        path: String,
        /// The field.
        field: String,
        /// Why.
        why: &'static str,
    },
    /// The server answered something else (the path is not a KV v2 secret, say).
    #[error("{server} would not read {path}: {cause}")]
    Rejected {
        /// Which server.
        server: String,
        /// The API path.
        path: String,
        /// Why.
        cause: String,
    },
}

impl KvError {
    /// Whether reading again later may help (the server is away, not refusing).
    pub fn is_transient(&self) -> bool {
        matches!(self, KvError::Unreachable { .. })
    }
}

/// Reads fields of KV v2 secrets from one OpenBao or Vault server.
#[derive(Debug)]
pub struct KvReader {
    client: VaultClient,
}

impl KvReader {
    /// A reader of the server `VAULT_ADDR` (or `BAO_ADDR`) names, signed in with `VAULT_TOKEN`
    /// (or `BAO_TOKEN`); when `KEYWARD_KMS` is a `transit:` spec, its server and sign-in
    /// instead (AppRole, Kubernetes, a token file: one server, one sign-in for both). Makes no
    /// call yet.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KvError> {
        let transit = env("KEYWARD_KMS")
            .and_then(|s| Spec::parse(&s).ok())
            .filter(|spec| spec.kind == "transit");
        let client = match transit {
            Some(spec) => VaultClient::new(&spec, env)
                .map_err(|e| KvError::Config(format!("the Vault server of KEYWARD_KMS: {e}")))?,
            None => {
                let either = |a: &str, b: &str| env(a).or_else(|| env(b));
                if either("VAULT_ADDR", "BAO_ADDR").is_none() {
                    return Err(KvError::Config(
                        "no Vault server: set VAULT_ADDR (or BAO_ADDR), or KEYWARD_KMS to a transit: spec on the same server"
                            .into(),
                    ));
                }
                if either("VAULT_TOKEN", "BAO_TOKEN").is_none() {
                    return Err(KvError::Config(
                        "no Vault token: set VAULT_TOKEN (or BAO_TOKEN), or sign in through KEYWARD_KMS's transit: settings (auth=approle, auth=kubernetes, token_file=)"
                            .into(),
                    ));
                }
                let spec = Spec::parse("vault:").map_err(|e| KvError::Config(e.to_string()))?;
                VaultClient::new(&spec, env).map_err(|e| match e {
                    KmsError::Config(m) => {
                        KvError::Config(format!("VAULT_ADDR / VAULT_TOKEN: {m}"))
                    }
                    other => KvError::Config(other.to_string()),
                })?
            }
        };
        Ok(Self { client })
    }

    /// The server, for messages.
    fn server(&self) -> String {
        format!("OpenBao/Vault at {}", self.client.address())
    }

    /// The field `r` names, from the newest version of its secret.
    pub async fn read(&self, r: &KvRef) -> Result<SecretString, KvError> {
        let server = self.server();
        let mut answer = self
            .client
            .call(&r.path, None)
            .await
            .map_err(|e| match e.status {
                0 | 429 | 500..=599 => KvError::Unreachable {
                    server: server.clone(),
                    cause: e.detail,
                },
                401 | 403 => KvError::Refused {
                    server: server.clone(),
                    cause: refusal(&e.detail, &format!("`read` on {}", r.path)),
                },
                404 => KvError::NoSecret {
                    server: server.clone(),
                    path: r.path.clone(),
                },
                _ => KvError::Rejected {
                    server: server.clone(),
                    path: r.path.clone(),
                    cause: e.detail,
                },
            })?;
        let Some(data) = answer
            .pointer_mut("/data/data")
            .and_then(Value::as_object_mut)
        else {
            return Err(KvError::Rejected {
                server,
                path: r.path.clone(),
                cause: "the answer is not a KV v2 secret (is the mount KV version 2?)".into(),
            });
        };
        // Moved out, not copied: the value's one String becomes the secret.
        let value = match data.remove(&r.field) {
            Some(Value::String(v)) => SecretString::from(v),
            _ => {
                return Err(KvError::NoField {
                    path: r.path.clone(),
                    field: r.field.clone(),
                });
            }
        };
        if value.expose_secret().trim().is_empty() {
            return Err(KvError::Empty {
                path: r.path.clone(),
                field: r.field.clone(),
            });
        }
        // A key (a service-account JSON at most) is short text: no environment variable or
        // header carries a NUL, and a huge value would fail later without naming this reference.
        let why = if value.expose_secret().contains('\0') {
            Some("it holds a NUL byte")
        } else if value.expose_secret().len() > 64 * 1024 {
            Some("it is longer than 64 KiB")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(KvError::Unusable {
                path: r.path.clone(),
                field: r.field.clone(),
                why,
            });
        }
        Ok(value)
    }
}

/// Where a reader's settings are read: this process's environment, or a map in tests.
type EnvFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A [`KvReader`] made from the environment the first time it is needed, and kept: one sign-in
/// for every reference of a load and of later loads. A reader that cannot be made is not kept,
/// so the next load tries again and says why again.
pub struct LazyKvReader {
    env: Box<EnvFn>,
    made: Mutex<Option<Arc<KvReader>>>,
}

impl fmt::Debug for LazyKvReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyKvReader")
            .field("made", &self.made)
            .finish_non_exhaustive()
    }
}

impl LazyKvReader {
    /// A reader to be made from `env` ([`crate::process_env`] for this process's).
    pub fn new(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            env: Box::new(env),
            made: Mutex::new(None),
        }
    }

    /// The reader, made now if it was not yet.
    pub fn reader(&self) -> Result<Arc<KvReader>, KvError> {
        // Never held across an await: the reader is cloned out and the lock dropped.
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reader) = made.as_ref() {
            return Ok(reader.clone());
        }
        let reader = Arc::new(KvReader::from_env(&*self.env)?);
        *made = Some(reader.clone());
        Ok(reader)
    }

    /// Reads the field `r` names.
    pub async fn read(&self, r: &KvRef) -> Result<SecretString, KvError> {
        let reader = self.reader()?;
        reader.read(r).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_api_path_is_kept_and_the_cli_path_gets_data_after_the_mount() {
        let r = KvRef::parse("secret/data/providers#openai_api_key").unwrap();
        assert_eq!(r.path(), "secret/data/providers");
        assert_eq!(r.field(), "openai_api_key");
        assert_eq!(r.to_string(), "secret/data/providers#openai_api_key");
        let r = KvRef::parse("/secret/providers/llm#OPENAI-KEY.v2").unwrap();
        assert_eq!(r.path(), "secret/data/providers/llm");
        assert_eq!(r.field(), "OPENAI-KEY.v2");
        // A mount of two segments, written the API's way.
        let r = KvRef::parse("teams/kv/data/acme#k").unwrap();
        assert_eq!(r.path(), "teams/kv/data/acme");
        // A secret named `data` is not the API marker.
        let r = KvRef::parse("secret/app/data#k").unwrap();
        assert_eq!(r.path(), "secret/data/app/data");
    }

    #[test]
    fn malformed_references_are_refused_without_being_quoted() {
        for bad in [
            "secret/data/providers",
            "secret/data/providers#",
            "providers#key",
            "#key",
            "secret/data/../../sys/raw#key",
            "secret/data/./x#key",
            "secret//data/x#key",
            "secret/data/x#a b",
            "secret/data/x#a#b",
            "secret/data/x?version=1#key",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        ] {
            let e = KvRef::parse(bad).unwrap_err();
            assert!(matches!(e, KvError::Invalid(_)), "{bad}: {e}");
            let text = e.to_string();
            assert!(text.contains("expected MOUNT/data/PATH#FIELD"), "{text}");
            assert!(!text.contains("abcdefghij"), "{text}");
        }
        let long = format!("secret/data/{}#k", "a/".repeat(300));
        assert!(KvRef::parse(&long).is_err());
    }

    #[test]
    fn a_reader_needs_a_server_and_a_token() {
        let no = |_: &str| None;
        let e = KvReader::from_env(&no).unwrap_err().to_string();
        assert!(e.contains("set VAULT_ADDR"), "{e}");
        let addr_only = |n: &str| (n == "VAULT_ADDR").then(|| "http://127.0.0.1:1".to_owned());
        let e = KvReader::from_env(&addr_only).unwrap_err().to_string();
        assert!(e.contains("set VAULT_TOKEN"), "{e}");
        let bad_addr = |n: &str| match n {
            "VAULT_ADDR" => Some("127.0.0.1:8200".to_owned()),
            "VAULT_TOKEN" => Some("s.SECRETTOKEN".to_owned()),
            _ => None,
        };
        let e = KvReader::from_env(&bad_addr).unwrap_err().to_string();
        assert!(e.contains("http://"), "{e}");
        assert!(!e.contains("SECRETTOKEN"), "{e}");
        // KEYWARD_KMS's transit settings are the sign-in when given.
        let approle = |n: &str| match n {
            "KEYWARD_KMS" => Some("transit:k,address=http://127.0.0.1:1,auth=approle".to_owned()),
            _ => None,
        };
        let e = KvReader::from_env(&approle).unwrap_err().to_string();
        assert!(e.contains("KEYWARD_KMS") && e.contains("role_id"), "{e}");
    }

    #[test]
    fn a_lazy_reader_is_made_once_and_not_kept_when_it_fails() {
        let lazy = LazyKvReader::new(|n: &str| match n {
            "VAULT_ADDR" => Some("http://127.0.0.1:1".to_owned()),
            "VAULT_TOKEN" => Some("t".to_owned()),
            _ => None,
        });
        let a = lazy.reader().unwrap();
        let b = lazy.reader().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let none = LazyKvReader::new(|_: &str| None);
        assert!(none.reader().is_err());
        assert!(none.made.lock().unwrap().is_none());
        assert!(!format!("{none:?}").is_empty());
    }
}
