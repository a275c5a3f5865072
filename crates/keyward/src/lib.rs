//! The `keyward` library: LLM provider keys from a Keyward vault, for Rust programs.
//!
//! [`KeyProvider`] opens the vault the way the `keyward` command does (same `KEYWARD_*`
//! variables) and hands out keys in three shapes:
//!
//! - [`KeyProvider::resolve`]: the resolved credential (secret, fields, where it came from);
//! - [`KeyProvider::provider_config`]: a [`ProviderConfig`] (`api_key`, `base_url`, `endpoint`,
//!   `api_version`, ...) to configure an SDK client with;
//! - [`KeyProvider::env_map`]: the environment variables that provider's client libraries read,
//!   to apply to a child [`std::process::Command`] with [`EnvMap::apply`].
//!
//! Why a `Command` and never this process's environment: `std::env::set_var` races with every
//! thread that reads the environment (which is why Rust 2024 made it `unsafe`), and a key put
//! there would reach every other child process and library of the program too.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyward::Error> {
//! let keys = keyward::KeyProvider::from_env().await?;
//! let openai = keys.provider_config("acme", "openai").await?;
//! println!("base URL: {:?}", openai.base_url);
//!
//! let env = keys.env_map("acme", "openai").await?;
//! let mut cmd = std::process::Command::new("python3");
//! cmd.arg("app.py");
//! let _files = env.apply(&mut cmd)?; // keep until the child exits
//! cmd.status()?;
//! # Ok(()) }
//! ```
//!
//! Every resolution is recorded in the vault's audit log, attributed to the actor set with
//! [`KeyProvider::with_actor`].
//!
//! The crate also holds the pieces `keyward run` is made of: [`reference`] (`keyward://`
//! secret references), [`mask`] (masking secrets in a stream) and [`probe`] (key tests).

pub mod config;
pub mod dotenv;
pub mod envmap;
pub mod kms;
pub use keyward_core::mask;
pub mod reference;
pub mod remote;

/// Key tests (shared with the server, which runs them for `POST /api/v1/credentials/{id}/test`).
pub use keyward_probe as probe;

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_core::credential::key_hint;
use keyward_core::provider::SecretKind;
use keyward_core::resolve::{EnvFallback, ResolveRequest, Resolved};
use keyward_core::{OrgId, Provider};
use keyward_kms::kv::LazyKvReader;
use keyward_store::{Vault, VaultError, VaultOptions};
use secrecy::{ExposeSecret as _, SecretString};

pub use config::{Config, ConfigInputs, GivenKeys, MasterKeys};
pub use envmap::{EnvGuard, EnvMap};
pub use keyward_core::resolve::Source;
pub use reference::Reference;

/// Errors of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was refused; the message names the setting.
    #[error("{0}")]
    Config(String),
    /// A `keyward://` reference is malformed or cannot be resolved.
    #[error("cannot resolve {reference}: {why}")]
    Reference {
        /// The reference as written.
        reference: String,
        /// Why.
        why: String,
    },
    /// The vault refused or failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The KMS that keeps the master keys refused or could not be reached.
    #[error(transparent)]
    Kms(#[from] keyward_kms::KmsError),
    /// The KMS would not unwrap one of the stored master keys.
    #[error("cannot unwrap master key '{kid}': {cause}")]
    MasterKeyUnwrap {
        /// The master key's id.
        kid: String,
        /// Why.
        cause: keyward_kms::KmsError,
    },
    /// A file operation failed (writing a key file for a child process).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The Keyward server refused or could not be reached.
    #[error("server: {0}")]
    Remote(String),
    /// The Keyward server has no such thing (404): no such organization, or one the token
    /// does not see.
    #[error("server: {0}")]
    RemoteNotFound(String),
    /// The organization has no active credential for the provider (404 `no_credential`): the
    /// one answer the environment fallback follows, so that a wrong organization or token is
    /// never taken for "use this machine's keys".
    #[error("server: {0}")]
    RemoteNoKey(String),
}

impl Error {
    /// Whether trying again later may help: the KMS that keeps the master keys is away (not
    /// refusing).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kms(e) | Error::MasterKeyUnwrap { cause: e, .. } => e.is_transient(),
            _ => false,
        }
    }
}

impl From<keyward_core::CoreError> for Error {
    fn from(e: keyward_core::CoreError) -> Self {
        Error::Vault(e.into())
    }
}

impl From<keyward_crypto::CryptoError> for Error {
    fn from(e: keyward_crypto::CryptoError) -> Self {
        match e {
            keyward_crypto::CryptoError::Config(m) => Error::Config(m),
            other => Error::Vault(other.into()),
        }
    }
}

/// A provider's settings, ready for an SDK client. Fields the credential does not have are
/// `None`; `extra` holds any others.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Provider id.
    pub provider: &'static str,
    /// The key (for Vertex, the service-account JSON; for Bedrock, the secret access key).
    pub api_key: Option<SecretString>,
    /// API base URL (the provider's default when the credential sets none).
    pub base_url: Option<String>,
    /// Azure endpoint.
    pub endpoint: Option<String>,
    /// Azure API version.
    pub api_version: Option<String>,
    /// Azure deployment.
    pub deployment: Option<String>,
    /// Vertex project.
    pub project: Option<String>,
    /// Vertex location.
    pub location: Option<String>,
    /// AWS region.
    pub region: Option<String>,
    /// AWS access key id.
    pub access_key_id: Option<String>,
    /// Other public fields.
    pub extra: BTreeMap<String, String>,
    /// Where it came from.
    pub source: Source,
}

impl From<Resolved> for ProviderConfig {
    fn from(r: Resolved) -> Self {
        let mut fields = r.fields;
        let mut take = |k: &str| fields.remove(k);
        Self {
            provider: r.provider.id,
            api_key: r.secret,
            base_url: take("base_url"),
            endpoint: take("endpoint"),
            api_version: take("api_version"),
            deployment: take("deployment"),
            project: take("project"),
            location: take("location"),
            region: take("region"),
            access_key_id: take("access_key_id"),
            extra: fields,
            source: r.source,
        }
    }
}

/// A resolved reference: the value and, for a secret, how it is shown when masked.
#[derive(Debug, Clone)]
pub struct ReferenceValue {
    /// The value.
    pub value: SecretString,
    /// `Some(mask)` when the value is a secret, `None` for a public field.
    pub mask: Option<String>,
    /// The value is a key file's contents (the Vertex service-account JSON): the variable
    /// should name a private file holding it, as `GOOGLE_APPLICATION_CREDENTIALS` does.
    pub is_file: bool,
}

/// Hands out keys from a Keyward vault. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyProvider {
    vault: Vault,
    actor: String,
    env_fallback: EnvFallback,
    vault_kv: Arc<LazyKvReader>,
}

impl KeyProvider {
    /// Opens the vault configured by `KEYWARD_DATA_DIR`, `KEYWARD_DATABASE_URL` and the master
    /// key variables, as the `keyward` command does.
    pub async fn from_env() -> Result<Self, Error> {
        Self::open(Config::load(&ConfigInputs::from_env())?).await
    }

    /// Opens the vault of a validated configuration.
    pub async fn open(config: Config) -> Result<Self, Error> {
        let location = config.location.clone();
        let keyring = config.keyring().await?;
        let vault = Vault::open(&location, keyring, VaultOptions::default()).await?;
        for warning in vault.startup_warnings().await? {
            tracing::warn!("{warning}");
        }
        Ok(Self::from_vault(vault))
    }

    /// Wraps an open vault.
    pub fn from_vault(vault: Vault) -> Self {
        Self {
            vault,
            actor: "lib".to_owned(),
            env_fallback: EnvFallback::Org { default: true },
            vault_kv: Arc::new(LazyKvReader::new(keyward_kms::process_env)),
        }
    }

    /// Sets where `keyward://vault:` references are read (by default, the OpenBao/Vault server
    /// of this process's `VAULT_ADDR` and `VAULT_TOKEN`, or of `KEYWARD_KMS`'s `transit:`
    /// settings, made at the first such reference).
    #[must_use]
    pub fn with_vault_kv(mut self, kv: Arc<LazyKvReader>) -> Self {
        self.vault_kv = kv;
        self
    }

    /// Sets who the audit log says asked (default `lib`).
    #[must_use]
    pub fn with_actor(mut self, actor: &str) -> Self {
        self.actor = actor.to_owned();
        self
    }

    /// Turns the fallback to this process's environment variables off, or on (the default)
    /// for organizations that do not turn it off themselves.
    #[must_use]
    pub fn with_env_fallback(mut self, on: bool) -> Self {
        self.env_fallback = if on {
            EnvFallback::Org { default: true }
        } else {
            EnvFallback::Off
        };
        self
    }

    /// The vault underneath.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    fn request(&self, org: &str, provider: &str) -> Result<ResolveRequest, Error> {
        let mut req = ResolveRequest::new(OrgId::new(org)?, Provider::get(provider)?);
        req.env_fallback = self.env_fallback;
        Ok(req)
    }

    /// Resolves the organization's key for a provider (audited).
    pub async fn resolve(&self, org: &str, provider: &str) -> Result<Resolved, Error> {
        let req = self.request(org, provider)?;
        Ok(self.vault.resolve(&req, &self.actor).await?)
    }

    /// Resolves with full control over the request (name, modality, strategy).
    pub async fn resolve_request(&self, req: &ResolveRequest) -> Result<Resolved, Error> {
        Ok(self.vault.resolve(req, &self.actor).await?)
    }

    /// The environment variables for several providers of one organization, resolved and
    /// audited together. Fails on the first provider that does not resolve, naming it.
    pub async fn env_map_many(
        &self,
        org: &str,
        providers: &[&'static Provider],
    ) -> Result<EnvMap, Error> {
        let org = OrgId::new(org)?;
        let reqs: Vec<ResolveRequest> = providers
            .iter()
            .map(|p| {
                let mut req = ResolveRequest::new(org.clone(), p);
                req.env_fallback = self.env_fallback;
                req
            })
            .collect();
        let mut map = EnvMap::new();
        for result in self.vault.resolve_many(&reqs, &self.actor).await? {
            map.extend_resolved(&result?)?;
        }
        Ok(map)
    }

    /// The provider settings for an SDK client.
    pub async fn provider_config(
        &self,
        org: &str,
        provider: &str,
    ) -> Result<ProviderConfig, Error> {
        Ok(self.resolve(org, provider).await?.into())
    }

    /// The environment variables for a provider, to apply to a child process.
    pub async fn env_map(&self, org: &str, provider: &str) -> Result<EnvMap, Error> {
        Ok(EnvMap::from_resolved(&self.resolve(org, provider).await?))
    }

    /// Resolves a `keyward://` reference (audited like a resolution, or a reveal for a
    /// variable). References name the vault explicitly, so they never fall back to the
    /// environment. A `vault:` reference is read from OpenBao/Vault (which audits it there).
    pub async fn resolve_reference(&self, reference: &Reference) -> Result<ReferenceValue, Error> {
        let fail = |e: &dyn std::fmt::Display| Error::Reference {
            reference: reference.to_string(),
            why: e.to_string(),
        };
        match reference {
            Reference::Var { org, name } => {
                let got = self
                    .vault
                    .get_var(name, Some(org), true, &self.actor)
                    .await
                    .map_err(|e| fail(&e))?;
                let value = got
                    .value
                    .filter(|v| !v.expose_secret().is_empty())
                    .ok_or_else(|| fail(&"the variable is empty"))?;
                Ok(ReferenceValue {
                    mask: got.view.sensitive.then(|| "***".to_owned()),
                    value,
                    is_file: false,
                })
            }
            Reference::Credential {
                org,
                provider,
                name,
                field,
            } => {
                let mut req = ResolveRequest::new(org.clone(), provider);
                req.name = name.clone();
                req.env_fallback = EnvFallback::Off;
                let resolved = self
                    .vault
                    .resolve(&req, &self.actor)
                    .await
                    .map_err(|e| fail(&e))?;
                reference_value(&resolved, field.as_deref()).map_err(|e| fail(&e))
            }
            Reference::Vault(kv) => reference::read_vault(&self.vault_kv, kv).await,
        }
    }
}

/// The value a credential reference names: the secret, or one public field.
pub(crate) fn reference_value(
    resolved: &Resolved,
    field: Option<&str>,
) -> Result<ReferenceValue, String> {
    match field {
        None => secret_value(resolved),
        Some(f) if f == resolved.provider.secret_field => secret_value(resolved),
        Some(f) => {
            let value = resolved
                .fields
                .get(f)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the credential has no field {f:?}"))?;
            Ok(ReferenceValue {
                value: SecretString::from(value.as_str()),
                mask: None,
                is_file: false,
            })
        }
    }
}

fn secret_value(resolved: &Resolved) -> Result<ReferenceValue, String> {
    let secret = resolved
        .secret
        .clone()
        .filter(|s| !s.expose_secret().is_empty())
        .ok_or("the credential has no secret")?;
    Ok(ReferenceValue {
        mask: Some(key_hint(resolved.provider, &secret)),
        is_file: resolved.provider.secret == SecretKind::ServiceAccountJson,
        value: secret,
    })
}

/// Parses a comma-separated provider list such as `openai,anthropic`.
pub fn parse_providers(list: &[String]) -> Result<Vec<&'static Provider>, Error> {
    let mut out: Vec<&'static Provider> = Vec::new();
    for id in list.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if id.is_empty() {
            continue;
        }
        let p = Provider::get(id)?;
        if !out.iter().any(|q| q.id == p.id) {
            out.push(p);
        }
    }
    Ok(out)
}
