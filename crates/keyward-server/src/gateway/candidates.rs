//! Where a request may go: the organization's keys for the provider, in its strategy's order
//! and borrowed from the resolution cache (or the server's environment variable, audited), or
//! one static target.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use keyward_core::{CredentialId, Provider};
use keyward_store::{
    CandidateSource, GatewayCandidates, GatewayTokenView, UsageSubject, VaultError,
};
use secrecy::SecretString;
use serde_json::json;

use super::answers::{no_key, provider_error, store_unavailable};
use super::{Gateway, targets};
use crate::AppState;

/// What served a request: a credential of the vault, or a static target.
#[derive(Debug, Clone, Copy)]
pub(super) enum Served<'a> {
    Credential(&'a CredentialId),
    Target(&'a targets::Target),
    /// The server's environment variable of this name (the organization's fallback is on).
    Environment(&'a str),
}

/// One place to send the request to, borrowed from the resolution cache or the targets.
pub(super) struct Upstream<'a> {
    pub(super) served: Served<'a>,
    pub(super) base: &'a str,
    pub(super) key: Option<&'a SecretString>,
    /// The credential's public fields (none for a static target).
    pub(super) fields: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl<'a> Served<'a> {
    /// What the usage of this upstream is counted under, and its id there.
    pub(super) fn usage_subject(&self) -> (UsageSubject, &'a str) {
        match *self {
            Served::Credential(id) => (UsageSubject::Credential, id.as_str()),
            Served::Target(t) => (UsageSubject::Target, t.id.as_str()),
            Served::Environment(var) => (UsageSubject::Environment, var),
        }
    }
}

/// The organization's keys for `provider`, in its strategy's order, from the resolution cache;
/// or the answer to give when there are none or they cannot be found.
pub(super) async fn lookup(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
) -> Result<GatewayCandidates, Response> {
    let stale_for = state.shared.gateway.options().stale_for;
    match state
        .vault
        .serving()
        .gateway_candidates(&view.org, provider, stale_for, state.env_fallback())
        .await
    {
        Ok(c) => Ok(c),
        Err(VaultError::NoCredential(e)) => {
            let r = no_key(provider, &e);
            state.shared.gateway.usage.record(
                UsageSubject::GatewayToken,
                &view.id,
                &view.org,
                provider.id,
                r.status().as_u16(),
            );
            Err(r)
        }
        Err(e) if e.is_unavailable() => Err(store_unavailable(
            provider,
            "the gateway cannot find this organization's keys while its store is unavailable",
        )),
        Err(e) => {
            tracing::error!(error = %e, "resolution failed");
            Err(provider_error(
                provider,
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway cannot find a key right now",
            ))
        }
    }
}

/// The candidates that have a base URL, as upstreams; those served from the server's
/// environment are audited.
pub(super) fn upstreams<'a>(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
    candidates: &'a GatewayCandidates,
) -> Vec<Upstream<'a>> {
    let upstreams: Vec<Upstream<'_>> = candidates
        .iter()
        .filter_map(|c| {
            Some(Upstream {
                served: match c.source {
                    CandidateSource::Credential(id) => Served::Credential(id),
                    CandidateSource::Environment(var) => Served::Environment(var),
                },
                base: c.base_url?,
                key: c.secret,
                fields: Some(c.fields),
            })
        })
        .collect();
    for up in &upstreams {
        if let Served::Environment(var) = up.served {
            state
                .shared
                .gateway
                .note_env_served(state.vault.serving(), view, provider, var);
        }
    }
    upstreams
}

impl Gateway {
    /// Audits that the server's environment served an organization's requests to `provider`
    /// (`gateway_env_fallback`, naming the variable), at most once a minute for each pair: the
    /// gateway counts requests in aggregate, and this is what the trail needs to know.
    fn note_env_served(
        &self,
        vault: &keyward_store::Vault,
        token: &GatewayTokenView,
        provider: &'static Provider,
        variable: &str,
    ) {
        let org = &token.org;
        {
            let mut served = self.env_served.lock().unwrap_or_else(|p| p.into_inner());
            let key = (org.clone(), provider.id);
            if served
                .get(&key)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
            {
                return;
            }
            served.insert(key, Instant::now());
        }
        let event = keyward_core::audit::NewEvent::new(
            &format!("gateway_token:{}", token.id),
            keyward_core::audit::Category::SecretAccess,
            "gateway_env_fallback",
            format!("env:{variable}"),
        )
        .org(Some(org.as_str()))
        .details(json!({ "provider": provider.id, "source": "environment", "variable": variable }));
        let vault = vault.clone();
        tokio::spawn(async move {
            if let Err(e) = vault.record(event).await {
                tracing::warn!(error = %e, "cannot audit a gateway request served from the environment");
            }
        });
    }
}
