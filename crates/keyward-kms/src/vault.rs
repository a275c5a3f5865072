//! An OpenBao or Vault server: its address, namespace and CA, how Keyward signs in to it, and
//! the calls Transit and KV make. Plain HTTP on `reqwest`; four endpoints did not justify a
//! client crate (see docs/ARCHITECTURE.md, "The root key in a KMS").

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::{KmsError, Spec};

/// The settings a Vault connection reads from `KEYWARD_KMS` (or, for KV alone, from nothing).
pub(crate) const SETTINGS: [&str; 11] = [
    "address",
    "namespace",
    "ca_cert",
    "auth",
    "token_file",
    "auth_mount",
    "role",
    "role_id",
    "role_id_file",
    "secret_id_file",
    "jwt_file",
];
const K8S_JWT: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How Keyward signs in.
#[derive(Debug)]
enum Auth {
    /// A token given as it is (`VAULT_TOKEN`, or a file read at each sign-in so a sidecar can
    /// renew it).
    Token(TokenSource),
    /// AppRole: `POST auth/<mount>/login {role_id, secret_id}`.
    AppRole {
        mount: String,
        role_id: SecretString,
        secret_id: SecretSource,
    },
    /// A Kubernetes service account's JWT: `POST auth/<mount>/login {role, jwt}` (also the
    /// shape of the JWT auth method).
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
}

#[derive(Debug)]
enum TokenSource {
    Given(SecretString),
    File(PathBuf),
}

#[derive(Debug)]
enum SecretSource {
    Given(SecretString),
    File(PathBuf),
}

/// A connection to one OpenBao or Vault server.
#[derive(Debug)]
pub struct VaultClient {
    address: String,
    namespace: Option<String>,
    auth: Auth,
    http: reqwest::Client,
    /// The token a sign-in gave, until it is refused.
    token: tokio::sync::Mutex<Option<SecretString>>,
}

/// A failed call: the status (0 when the server was not reached) and the server's `errors`.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) status: u16,
    pub(crate) detail: String,
    /// The sign-in path, when it was the sign-in that failed.
    pub(crate) sign_in: Option<String>,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

fn read_secret_file(path: &std::path::Path, what: &str) -> Result<SecretString, KmsError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        KmsError::Config(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(KmsError::Config(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

impl VaultClient {
    /// The server and sign-in `spec` describes, with `VAULT_*` (or `BAO_*`) variables for what
    /// it leaves out.
    pub fn new(spec: &Spec, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        let either = |a: &str, b: &str| env(a).or_else(|| env(b));
        let address = spec
            .get("address")
            .map(str::to_owned)
            .or_else(|| either("VAULT_ADDR", "BAO_ADDR"))
            .ok_or_else(|| {
                KmsError::Config(format!(
                    "{}: no server address: set address= or VAULT_ADDR",
                    spec.kind
                ))
            })?;
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(KmsError::Config(format!(
                "{}: the address must start with http:// or https://",
                spec.kind
            )));
        }
        let namespace = spec
            .get("namespace")
            .map(str::to_owned)
            .or_else(|| either("VAULT_NAMESPACE", "BAO_NAMESPACE"));
        let ca = spec
            .get("ca_cert")
            .map(str::to_owned)
            .or_else(|| either("VAULT_CACERT", "BAO_CACERT"));
        let auth = match spec.get("auth").unwrap_or("token") {
            "token" => match spec.get("token_file") {
                Some(path) => Auth::Token(TokenSource::File(path.into())),
                None => Auth::Token(TokenSource::Given(
                    either("VAULT_TOKEN", "BAO_TOKEN").map(SecretString::from).ok_or_else(
                        || {
                            KmsError::Config(format!(
                                "{}: no token: set VAULT_TOKEN, token_file=PATH, or auth=approle / auth=kubernetes",
                                spec.kind
                            ))
                        },
                    )?,
                )),
            },
            "approle" => {
                let role_id = match (spec.get("role_id"), spec.get("role_id_file")) {
                    (Some(id), _) => SecretString::from(id.to_owned()),
                    (None, Some(path)) => read_secret_file(path.as_ref(), "AppRole role id")?,
                    (None, None) => env("VAULT_ROLE_ID").map(SecretString::from).ok_or_else(|| {
                        KmsError::Config(format!(
                            "{}: auth=approle needs role_id=, role_id_file= or VAULT_ROLE_ID",
                            spec.kind
                        ))
                    })?,
                };
                let secret_id = match spec.get("secret_id_file") {
                    Some(path) => SecretSource::File(path.into()),
                    None => SecretSource::Given(
                        env("VAULT_SECRET_ID").map(SecretString::from).ok_or_else(|| {
                            KmsError::Config(format!(
                                "{}: auth=approle needs secret_id_file= or VAULT_SECRET_ID",
                                spec.kind
                            ))
                        })?,
                    ),
                };
                Auth::AppRole {
                    mount: spec.get("auth_mount").unwrap_or("approle").to_owned(),
                    role_id,
                    secret_id,
                }
            }
            "kubernetes" => Auth::Kubernetes {
                mount: spec.get("auth_mount").unwrap_or("kubernetes").to_owned(),
                role: spec
                    .require("role", "the Vault role the service account signs in as")?
                    .to_owned(),
                jwt_file: spec.get("jwt_file").unwrap_or(K8S_JWT).into(),
            },
            other => {
                return Err(KmsError::Config(format!(
                    "{}: unknown auth '{other}': use token, approle or kubernetes",
                    spec.kind
                )));
            }
        };
        // Several crates may race to install a process-wide default; any of them will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            // The token must not follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca {
            let pem = std::fs::read(&path).map_err(|e| {
                KmsError::Config(format!(
                    "{}: cannot read the CA file {path}: {e}",
                    spec.kind
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                KmsError::Config(format!("{}: the CA file {path} is not PEM: {e}", spec.kind))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| KmsError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            address: address.trim_end_matches('/').to_owned(),
            namespace,
            auth,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The secrets Keyward signs in with (files read now), for [`crate::Kms::guarded_secrets`].
    pub(crate) fn secrets(&self) -> Vec<Zeroizing<String>> {
        let given = |s: &SecretString| Zeroizing::new(s.expose_secret().to_owned());
        let file = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .ok()
                .map(|t| Zeroizing::new(t.trim().to_owned()))
        };
        let mut out = Vec::new();
        match &self.auth {
            Auth::Token(TokenSource::Given(t)) => out.push(given(t)),
            Auth::Token(TokenSource::File(p)) => out.extend(file(p)),
            Auth::AppRole {
                role_id, secret_id, ..
            } => {
                out.push(given(role_id));
                match secret_id {
                    SecretSource::Given(s) => out.push(given(s)),
                    SecretSource::File(p) => out.extend(file(p)),
                }
            }
            Auth::Kubernetes { jwt_file, .. } => out.extend(file(jwt_file)),
        }
        out
    }

    /// How Keyward signs in, for messages.
    pub(crate) fn auth_name(&self) -> &'static str {
        match self.auth {
            Auth::Token(_) => "token",
            Auth::AppRole { .. } => "AppRole",
            Auth::Kubernetes { .. } => "Kubernetes",
        }
    }

    /// `POST` (with a body) or `GET` `path` under `/v1/`, signed in; a refused token from a
    /// sign-in is dropped and the call made once more with a new one (it may have expired).
    pub(crate) async fn call(&self, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let mut guard = self.token.lock().await;
        let fresh = guard.is_none();
        if fresh {
            *guard = Some(self.sign_in().await?);
        }
        let answer = self.send(path, body, guard.as_ref()).await;
        match answer {
            Err(e)
                if e.status == 403
                    && !fresh
                    && !matches!(self.auth, Auth::Token(TokenSource::Given(_))) =>
            {
                *guard = Some(self.sign_in().await?);
                self.send(path, body, guard.as_ref()).await
            }
            other => other,
        }
    }

    async fn sign_in(&self) -> Result<SecretString, CallError> {
        let login = |mount: &str, body: Value| {
            let path = format!("auth/{mount}/login");
            async move {
                let answer = self
                    .send(&path, Some(&body), None)
                    .await
                    .map_err(|e| CallError {
                        sign_in: Some(path.clone()),
                        ..e
                    })?;
                answer
                    .pointer("/auth/client_token")
                    .and_then(Value::as_str)
                    .map(|t| SecretString::from(t.to_owned()))
                    .ok_or(CallError {
                        status: 0,
                        detail: format!("the answer to {path} holds no token"),
                        sign_in: None,
                    })
            }
        };
        let file_err = |e: KmsError| CallError {
            status: 0,
            detail: e.to_string(),
            sign_in: None,
        };
        match &self.auth {
            Auth::Token(TokenSource::Given(t)) => Ok(t.clone()),
            Auth::Token(TokenSource::File(path)) => {
                read_secret_file(path, "token").map_err(file_err)
            }
            Auth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let secret_id = match secret_id {
                    SecretSource::Given(s) => s.clone(),
                    SecretSource::File(path) => {
                        read_secret_file(path, "AppRole secret id").map_err(file_err)?
                    }
                };
                // The body holds secrets: it lives in a wiped buffer only while it is sent.
                login(
                    mount,
                    serde_json::json!({
                        "role_id": role_id.expose_secret(),
                        "secret_id": secret_id.expose_secret(),
                    }),
                )
                .await
            }
            Auth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_secret_file(jwt_file, "service account token").map_err(file_err)?;
                login(
                    mount,
                    serde_json::json!({"role": role, "jwt": jwt.expose_secret()}),
                )
                .await
            }
        }
    }

    async fn send(
        &self,
        path: &str,
        body: Option<&Value>,
        token: Option<&SecretString>,
    ) -> Result<Value, CallError> {
        let url = format!("{}/v1/{path}", self.address);
        let mut request = match body {
            Some(b) => self.http.post(&url).json(b),
            None => self.http.get(&url),
        };
        if let Some(token) = token {
            let mut value =
                reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    CallError {
                        status: 0,
                        detail: "the token holds characters a header cannot carry".into(),
                        sign_in: None,
                    }
                })?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        let response = request.send().await.map_err(|e| CallError {
            status: 0,
            // The URL holds no secret; the error says what failed (connect, timeout, TLS).
            detail: describe_transport(&e),
            sign_in: None,
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| CallError {
            status: 0,
            detail: describe_transport(&e),
            sign_in: None,
        })?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| CallError {
                status: 0,
                detail: format!("the answer to {path} is not JSON: {e}"),
                sign_in: None,
            });
        }
        let detail = serde_json::from_slice::<Errors>(&bytes)
            .ok()
            .map(|e| {
                e.errors
                    .iter()
                    .map(|e| one_line(e))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(CallError {
            status,
            detail,
            sign_in: None,
        })
    }
}

/// One of the server's errors on one line, without the wrapping of a single error
/// (`1 error occurred:\n\t* permission denied\n\n` is `permission denied`).
fn one_line(error: &str) -> String {
    let words = error.split_whitespace().collect::<Vec<_>>().join(" ");
    match words.strip_prefix("1 error occurred: * ") {
        Some(one) => one.to_owned(),
        None => words,
    }
}

/// A transport failure in a few words, with its causes (reqwest's own text is terse).
pub(crate) fn describe_transport(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl CallError {
    /// This failure as a [`KmsError`]: `kms` names the server and key, `needs` says which
    /// capability on which path the call needs (for a refusal).
    pub(crate) fn into_kms(self, kms: String, needs: &str) -> KmsError {
        let detail = self.detail;
        if let Some(path) = self.sign_in
            && matches!(self.status, 400..=499)
        {
            return KmsError::Refused {
                kms,
                cause: format!(
                    "the sign-in at {path} was refused ({detail}): check the role and the credentials it is given"
                ),
            };
        }
        match self.status {
            0 | 429 | 500..=599 => KmsError::Unreachable { kms, cause: detail },
            401 | 403 => KmsError::Refused {
                kms,
                cause: refusal(&detail, needs),
            },
            404 => KmsError::Rejected {
                kms,
                cause: format!("not found ({detail}): is the mount right?"),
            },
            _ => KmsError::Rejected { kms, cause: detail },
        }
    }
}

/// Why the server refused a call: the token, or its policy (`needs` names the capability and the
/// path, such as "`read` on secret/data/providers").
pub(crate) fn refusal(detail: &str, needs: &str) -> String {
    format!("{detail}: the token is not valid (expired or revoked), or its policy lacks {needs}")
}
