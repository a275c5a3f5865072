//! A Keyward server as the source of keys (`KEYWARD_URL` and `KEYWARD_TOKEN`): what
//! `keyward resolve`, `keyward env` and `keyward run` use instead of a local vault, so that a
//! machine needs only a `resolver` token, never the master key.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_core::resolve::{Resolved, Source};
use keyward_core::{CredentialId, CredentialName, Provider};
use keyward_kms::kv::LazyKvReader;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::reference::Reference;
use crate::{EnvMap, Error, ReferenceValue};

/// The most of an answer the client reads: the largest Keyward sends (a full audit page, a
/// price list) is a few MiB.
const ANSWER_LIMIT: usize = 16 << 20;

/// A client of a Keyward server.
#[derive(Clone)]
pub struct Remote {
    base: String,
    token: SecretString,
    /// `KEYWARD_TOKEN_FILE`: read again at every call (a platform's projected token rotates).
    token_file: Option<std::path::PathBuf>,
    client: reqwest::Client,
    /// `keyward://vault:` references are read here, not through the server.
    vault_kv: Arc<LazyKvReader>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn remote_err(msg: impl Into<String>) -> Error {
    Error::Remote(msg.into())
}

impl Remote {
    /// The server named by `KEYWARD_URL`, with `KEYWARD_TOKEN`, or with the token in
    /// `KEYWARD_TOKEN_FILE` (a workload's projected token, read again at every call since it
    /// rotates); `None` when `KEYWARD_URL` is unset (work on the local data directory).
    pub fn from_env() -> Result<Option<Self>, Error> {
        let Some(url) = std::env::var("KEYWARD_URL").ok().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let set = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
        match (set("KEYWARD_TOKEN"), set("KEYWARD_TOKEN_FILE")) {
            (Some(_), Some(_)) => Err(Error::Config(
                "set one of KEYWARD_TOKEN and KEYWARD_TOKEN_FILE".into(),
            )),
            (Some(token), None) => Self::new(&url, SecretString::from(token)).map(Some),
            (None, Some(file)) => {
                let mut remote = Self::new(&url, SecretString::from(String::new()))?;
                remote.token_file = Some(file.into());
                remote.bearer()?;
                Ok(Some(remote))
            }
            (None, None) => Err(Error::Config(
                "KEYWARD_URL is set but neither KEYWARD_TOKEN nor KEYWARD_TOKEN_FILE is".into(),
            )),
        }
    }

    /// The bearer for the next call: the token, or what its file holds now.
    fn bearer(&self) -> Result<SecretString, Error> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone());
        };
        // A token is a few KiB at most: read no more than 64 KiB (a path such as /dev/zero must
        // not take the memory).
        let text = {
            use std::io::Read as _;
            let fail = |e: std::io::Error| {
                Error::Config(format!(
                    "KEYWARD_TOKEN_FILE: cannot read {}: {e}",
                    path.display()
                ))
            };
            // A FIFO or a device would block or never end: only a regular file (a platform's
            // projected token is a link to one) is read.
            if !std::fs::metadata(path).map_err(fail)?.is_file() {
                return Err(Error::Config(format!(
                    "KEYWARD_TOKEN_FILE: {} is not a regular file",
                    path.display()
                )));
            }
            let mut bytes = zeroize::Zeroizing::new(Vec::new());
            std::fs::File::open(path)
                .map_err(fail)?
                .take(64 * 1024 + 1)
                .read_to_end(&mut bytes)
                .map_err(fail)?;
            if bytes.len() > 64 * 1024 {
                return Err(Error::Config(format!(
                    "KEYWARD_TOKEN_FILE: {} is larger than 64 KiB; it is not a token",
                    path.display()
                )));
            }
            zeroize::Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
                Error::Config(format!(
                    "KEYWARD_TOKEN_FILE: {} is not text",
                    path.display()
                ))
            })?)
        };
        let token = text.trim();
        if token.is_empty() {
            return Err(Error::Config(format!(
                "KEYWARD_TOKEN_FILE: {} is empty",
                path.display()
            )));
        }
        Ok(SecretString::from(token.to_owned()))
    }

    /// A client of the server at `base` (`http://host:8080`).
    pub fn new(base: &str, token: SecretString) -> Result<Self, Error> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(
                "KEYWARD_URL must start with http:// or https://".into(),
            ));
        }
        // Several crates may race to install a process-wide default; any of them will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            // The server tells the CLI's calls from other clients' (a reload says who asked).
            .user_agent(concat!("keyward-cli/", env!("CARGO_PKG_VERSION")))
            // The bearer token must not follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| remote_err(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            token_file: None,
            client,
            vault_kv: Arc::new(LazyKvReader::new(keyward_kms::process_env)),
        })
    }

    /// Calls the API; the JSON answer, or the problem's detail as the error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let bearer = self.bearer()?;
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer.expose_secret());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| remote_err(format!("cannot reach {}: {}", self.base, e.without_url())))?;
        let status = resp.status();
        let value: Value = serde_json::from_slice(&self.body(resp).await?).unwrap_or(Value::Null);
        let no_key = value["code"] == "no_credential";
        if status.is_success() {
            Ok(value)
        } else {
            // Problem details say what is wrong; they never hold a secret.
            // The server words its hints for HTTP clients; a person at this command line
            // passes a flag instead.
            let detail = value["detail"].as_str().unwrap_or("no details").replace(
                "(to store it anyway, send \"skip_format_check\": true)",
                "(to store it anyway: --no-format-check)",
            );
            let message = format!("{detail} ({status})");
            Err(match status {
                reqwest::StatusCode::NOT_FOUND if no_key => Error::RemoteNoKey(message),
                reqwest::StatusCode::NOT_FOUND => Error::RemoteNotFound(message),
                _ => remote_err(message),
            })
        }
    }

    /// An answer's body, read up to [`ANSWER_LIMIT`]: a server (or whatever answers at its
    /// address) cannot make the command hold more.
    async fn body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| remote_err(format!("{} broke off: {}", self.base, e.without_url())))?
        {
            if body.len() + chunk.len() > ANSWER_LIMIT {
                return Err(remote_err(format!(
                    "{} answered with more than {} MiB, more than any Keyward answer",
                    self.base,
                    ANSWER_LIMIT >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Resolves a provider's key (the server audits it).
    pub async fn resolve(
        &self,
        org: &str,
        provider: &str,
        name: Option<&str>,
    ) -> Result<Resolved, Error> {
        let mut body = json!({ "organization_id": org, "provider": provider });
        if let Some(n) = name {
            body["credential_name"] = json!(n);
        }
        let obj = self
            .call(reqwest::Method::POST, "/api/v1/resolve", Some(body))
            .await?;
        resolved_from(&obj)
    }

    /// Resolves a provider's key as [`Remote::resolve`] does; when the organization has none
    /// and `env_fallback` is on, this process's own environment answers (the one resolution
    /// rule, with the caller's environment, since the server's is not the caller's).
    pub async fn resolve_or_env(
        &self,
        org: &str,
        provider: &'static Provider,
        name: Option<&str>,
        env_fallback: bool,
    ) -> Result<Resolved, Error> {
        match self.resolve(org, provider.id, name).await {
            Err(Error::RemoteNoKey(why)) if env_fallback && name.is_none() => {
                keyward_core::resolve::from_environment(provider, &|v| {
                    // Never Keyward's own settings, nor its KMS's credentials.
                    std::env::var(v).ok().filter(|value| {
                        !keyward_core::env::is_keyward_own(v)
                            && !keyward_core::env::holds_guarded(value)
                    })
                })
                .ok_or_else(|| {
                    Error::RemoteNoKey(format!(
                        "{why}; nor does this machine's environment have {}",
                        provider.secret_env.join(" or ")
                    ))
                })
            }
            other => other,
        }
    }

    /// The variables of an organization's providers (all active ones, or those named); with
    /// `env_fallback`, a named provider without a credential takes this process's own
    /// environment's key.
    pub async fn env_map_fallback(
        &self,
        org: &str,
        providers: &[&'static Provider],
        env_fallback: bool,
    ) -> Result<EnvMap, Error> {
        match self.env_map_many(org, providers).await {
            Err(Error::RemoteNoKey(_)) if env_fallback && !providers.is_empty() => {
                let mut map = EnvMap::new();
                for p in providers {
                    map.extend_resolved(&self.resolve_or_env(org, p, None, true).await?)?;
                }
                Ok(map)
            }
            other => other,
        }
    }

    /// The variables of an organization's providers (all active ones, or those named).
    pub async fn env_map_many(
        &self,
        org: &str,
        providers: &[&'static Provider],
    ) -> Result<EnvMap, Error> {
        let ids: Vec<&str> = providers.iter().map(|p| p.id).collect();
        let obj = self
            .call(
                reqwest::Method::POST,
                "/api/v1/env",
                Some(json!({ "organization_id": org, "providers": ids })),
            )
            .await?;
        let mut map = EnvMap::new();
        for p in obj["providers"].as_array().into_iter().flatten() {
            map.extend_resolved(&resolved_from(p)?)?;
        }
        Ok(map)
    }

    /// Resolves a `keyward://` reference through the server.
    pub async fn resolve_reference(&self, reference: &Reference) -> Result<ReferenceValue, Error> {
        let fail = |e: Error| Error::Reference {
            reference: reference.to_string(),
            why: match e {
                Error::Remote(m) | Error::RemoteNotFound(m) | Error::RemoteNoKey(m) => m,
                other => other.to_string(),
            },
        };
        match reference {
            Reference::Var { org, name } => {
                let obj = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/v1/orgs/{org}/secrets/var.{name}"),
                        None,
                    )
                    .await
                    .map_err(fail)?;
                let value = obj["value"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| fail(remote_err("the variable is empty")))?;
                // The server does not say whether it is sensitive: mask it to be safe.
                Ok(ReferenceValue {
                    value: SecretString::from(value),
                    mask: Some("***".into()),
                    is_file: false,
                })
            }
            Reference::Credential {
                org,
                provider,
                name,
                field,
            } => {
                let resolved = self
                    .resolve(
                        org.as_str(),
                        provider.id,
                        name.as_ref().map(CredentialName::as_str),
                    )
                    .await
                    .map_err(fail)?;
                crate::reference_value(&resolved, field.as_deref())
                    .map_err(|why| fail(remote_err(why)))
            }
            // Read from this machine's OpenBao/Vault, as a local run would: the server is not
            // asked.
            Reference::Vault(kv) => crate::reference::read_vault(&self.vault_kv, kv).await,
        }
    }
}

/// A config object from the server back into a resolution.
fn resolved_from(obj: &Value) -> Result<Resolved, Error> {
    let bad = || remote_err("the server's answer is not a provider config object");
    let provider = Provider::get(obj["provider"].as_str().ok_or_else(bad)?)?;
    let mut fields = BTreeMap::new();
    for (k, v) in obj.as_object().ok_or_else(bad)? {
        // What describes the answer, not the credential: its source, the key's hint.
        if let (
            "provider" | "api_key" | "credential_id" | "credential_name" | "source" | "key_hint",
            _,
        ) = (k.as_str(), v)
        {
            continue;
        }
        if let Some(s) = v.as_str() {
            fields.insert(k.clone(), s.to_owned());
        }
    }
    let source = match (
        obj["credential_id"].as_str(),
        obj["credential_name"].as_str(),
    ) {
        (Some(id), Some(name)) => Source::Vault {
            id: CredentialId::new(id)?,
            name: CredentialName::new(name)?,
        },
        // The server's environment (its fallback is on): `env:VAR` names the variable.
        _ => Source::Environment {
            variable: obj["source"]
                .as_str()
                .and_then(|s| s.strip_prefix("env:"))
                .map_or_else(|| "server".into(), |v| format!("{v} (the server's)")),
        },
    };
    Ok(Resolved {
        provider,
        source,
        secret: obj["api_key"].as_str().map(SecretString::from),
        fields,
    })
}
