//! Keys out, audited: one provider's config object, an organization's providers together
//! (what `keyward run` asks a server for), and the External Secrets Operator's lookup.

use keyward_core::credential::CredentialStatus;
use keyward_core::credential::{Modality, key_hint};
use keyward_core::env::{EnvValue, provider_env};
use keyward_core::resolve::{ResolveRequest, Resolved};
use keyward_core::{CredentialName, OrgId, Provider, VarName};
use keyward_store::{Principal, VaultError};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{allow_on, vault};
use crate::access::{On, Op};
use crate::{ApiError, AppState};

/// Resolves `provider`'s key for `org` (the credential `name`, and one usable for `modality`,
/// if given), falling back to the server's environment only where the server and the
/// organization allow.
pub(crate) async fn one(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    provider: &str,
    name: Option<&str>,
    modality: Option<&str>,
) -> Result<Resolved, ApiError> {
    let grant = allow_on(p, Op::Resolve, On::Org(org))?;
    let mut req = ResolveRequest::new(org.clone(), Provider::get(provider)?);
    req.name = name.map(CredentialName::new).transpose()?;
    req.modality = modality.map(str::parse::<Modality>).transpose()?;
    // The server's own environment belongs to the operator: only where it allows.
    req.env_fallback = state.env_fallback();
    Ok(vault(state, &grant).resolve(&req, grant.actor()).await?)
}

/// Resolves an organization's providers together (all of them with an active credential that
/// opens, if `providers` is empty); refuses, before any key leaves, two providers that would
/// write one environment variable.
pub(crate) async fn many(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    providers: &[String],
) -> Result<Vec<Resolved>, ApiError> {
    let grant = allow_on(p, Op::Resolve, On::Org(org))?;
    let vault = vault(state, &grant);
    let providers: Vec<&'static Provider> = if providers.is_empty() {
        vault.require_org(org).await?;
        let creds = vault.list_credentials(Some(org), None).await?;
        keyward_core::PROVIDERS
            .iter()
            .filter(|p| {
                creds
                    .iter()
                    .any(|c| c.provider == p.id && c.active && c.status == CredentialStatus::Ok)
            })
            .collect()
    } else {
        providers
            .iter()
            .map(|p| Provider::get(p))
            .collect::<Result<_, _>>()?
    };
    let reqs: Vec<ResolveRequest> = providers
        .iter()
        .map(|p| {
            let mut req = ResolveRequest::new(org.clone(), p);
            req.env_fallback = state.env_fallback();
            req
        })
        .collect();
    let mut resolved = Vec::with_capacity(reqs.len());
    for result in vault.resolve_many(&reqs, grant.actor()).await? {
        resolved.push(result?);
    }
    if let Some(refusal) = keyward_core::env::first_collision(&resolved) {
        return Err(ApiError::Conflict(refusal));
    }
    Ok(resolved)
}

/// A resolution as `/resolve` and `/env` answer it: the config object, with what may be shown
/// of the key (`key_hint`), the variables it becomes (`env`: what `keyward run` would set, a
/// secret one by reference to `api_key` rather than a second copy) and how long a client may
/// keep it (`cache_ttl_ms`: as long as the server keeps its own).
pub(crate) fn answer(state: &AppState, resolved: &Resolved) -> Value {
    let env: Vec<Value> = provider_env(resolved)
        .into_iter()
        .map(|var| match var.value {
            EnvValue::Plain(value) => json!({ "name": var.name, "value": value }),
            EnvValue::Secret(_) => json!({ "name": var.name, "secret": true }),
            EnvValue::SecretFile(_) => json!({ "name": var.name, "secret": true, "file": true }),
        })
        .collect();
    let mut object = resolved.config_object();
    object["key_hint"] = json!(
        resolved
            .secret
            .as_ref()
            .map(|s| key_hint(resolved.provider, s))
    );
    object["env"] = Value::Array(env);
    let ttl = state.vault.serving().cache_ttl();
    object["cache_ttl_ms"] = json!(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    object
}

/// What the External Secrets Operator's lookup found.
#[derive(Debug)]
pub(crate) enum Secret {
    /// A config variable's value (`None`: a sensitive value that did not open).
    Variable(Option<SecretString>),
    /// A provider's resolution.
    Provider(Box<Resolved>),
}

/// `key` is a provider id (its resolution) or `var.NAME` (the organization's own variable,
/// never a global one); "not found" when there is no such key.
pub(crate) async fn secret(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    key: &str,
) -> Result<Secret, ApiError> {
    let grant = allow_on(p, Op::Resolve, On::Org(org))?;
    let missing = || {
        ApiError::NotFound(format!(
            "no secret {} in organization '{org}'",
            keyward_core::secret_like::shown(key)
        ))
    };
    if let Some(name) = key.strip_prefix("var.") {
        let name = VarName::new(name)?;
        let got = match vault(state, &grant)
            .get_var(&name, Some(org), true, grant.actor())
            .await
        {
            Err(VaultError::NotFound(_)) => return Err(missing()),
            other => other?,
        };
        if got.view.org.as_ref() != Some(org) {
            return Err(missing());
        }
        return Ok(Secret::Variable(got.value));
    }
    let provider = Provider::get(key).map_err(|_| missing())?;
    let mut req = ResolveRequest::new(org.clone(), provider);
    req.env_fallback = state.env_fallback();
    match vault(state, &grant).resolve(&req, grant.actor()).await {
        Ok(resolved) => Ok(Secret::Provider(Box::new(resolved))),
        Err(VaultError::NoCredential(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}
