//! The server's own: master keys (status, rotation) and the gateway (what it serves, reloading
//! its targets file).

use std::collections::BTreeMap;

use keyward_core::{Millis, OrgId};
use keyward_store::{KeyStatus, Principal, RotationProgress, RotationReport};
use serde::Serialize;
use serde_json::{Value, json};

use super::{allow_on, listed, vault};
use crate::access::{self, On, Op};
use crate::{
    ApiError, AppState, LoadRecord, LoadTrigger, TargetSummary, TargetsError, TargetsLoaded,
};

pub(crate) async fn master_key_status(
    state: &AppState,
    p: &Principal,
) -> Result<KeyStatus, ApiError> {
    let grant = allow_on(p, Op::MasterKeyStatus, On::Unowned)?;
    Ok(vault(state, &grant).key_status().await?)
}

/// Rewraps every data key under the primary master key, reporting progress to `progress`.
pub(crate) async fn rotate_master_key(
    state: &AppState,
    p: &Principal,
    progress: impl FnMut(RotationProgress) + Send,
) -> Result<RotationReport, ApiError> {
    let grant = allow_on(p, Op::RotateMasterKey, On::Unowned)?;
    Ok(vault(state, &grant)
        .rotate_master_key(1000, grant.actor(), progress)
        .await?)
}

/// Whether `p` may rotate the master key (checked before a rotation is started in the
/// background, and again when it runs).
pub(crate) fn may_rotate(p: &Principal) -> Result<(), ApiError> {
    allow_on(p, Op::RotateMasterKey, On::Unowned).map(|_| ())
}

/// Loads the gateway's targets file again; if it does not load, the targets in use stay and
/// the error says why.
pub(crate) async fn reload_gateway(
    state: &AppState,
    p: &Principal,
    by: LoadTrigger,
) -> Result<Result<TargetsLoaded, TargetsError>, ApiError> {
    let grant = allow_on(p, Op::ReloadGateway, On::Unowned)?;
    Ok(state.reload_gateway_targets(by, grant.actor()).await)
}

/// What the gateway serves, as `p` may see it.
#[derive(Debug, Serialize)]
pub(crate) struct GatewayStatus {
    /// Whether the server has a targets file.
    pub(crate) targets_file: bool,
    pub(crate) targets: Vec<TargetSummary>,
    pub(crate) ignored: Vec<String>,
    pub(crate) last_load: Option<LoadRecord>,
    pub(crate) serving_since: Option<LoadRecord>,
    /// Per organization and provider: the active credentials, and those set aside.
    pub(crate) providers: Vec<Value>,
    /// The audit-logger policy in force.
    pub(crate) audit_policy: keyward_store::AuditPolicy,
    /// The audit sinks and how far behind they are (for admins).
    pub(crate) audit_sinks: Vec<crate::SinkStatus>,
}

/// The static targets, their last load, and per organization and provider the active
/// credentials and those set aside (failing or rate limited, until when): of the organization
/// named, else the caller's own, else for an admin every one.
pub(crate) async fn gateway_status(
    state: &AppState,
    p: &Principal,
    org: Option<&OrgId>,
) -> Result<GatewayStatus, ApiError> {
    let grant = allow_on(
        p,
        Op::GatewayStatus,
        access::scope_of(p, org, On::Everywhere),
    )?;
    listed(state, &grant).await?;
    let org = grant.org();
    let gateway = &state.shared.gateway;
    let (loaded, mut last_load, serving_since) = gateway.targets_status();
    // Why a load failed names the file and other organizations' targets and references: for
    // whoever may reload it.
    if !super::may(p, Op::ReloadGateway, On::Unowned)
        && let Some(load) = last_load.as_mut()
        && load.error.is_some()
    {
        load.error = Some(
            "the targets file did not load; the previous targets stay (an admin sees why)".into(),
        );
    }
    let targets: Vec<_> = loaded
        .targets
        .into_iter()
        .filter(|t| org.is_none_or(|o| t.org == o.as_str()))
        .collect();
    let set_aside = gateway.set_aside();
    let now = Millis::now();
    let creds = vault(state, &grant).list_credentials(org, None).await?;
    let mut providers: BTreeMap<(String, String), (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for c in creds.iter().filter(|c| c.active) {
        let entry = providers
            .entry((c.org.to_string(), c.provider.clone()))
            .or_default();
        let named = json!({ "id": c.id, "name": c.name, "key_hint": c.key_hint });
        match set_aside.iter().find(|(id, _, _)| *id == c.id) {
            Some((_, why, left)) => {
                let mut v = named;
                v["reason"] = json!(why.as_str());
                v["until"] = json!(Millis(
                    now.0 + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2)
                ));
                entry.1.push(v);
            }
            None => entry.0.push(named),
        }
    }
    // Sinks name the operator's systems: for whoever may reload the gateway.
    let audit_sinks = if super::may(p, Op::ReloadGateway, On::Unowned) {
        state
            .shared
            .sinks
            .states
            .iter()
            .map(|s| s.status())
            .collect()
    } else {
        Vec::new()
    };
    Ok(GatewayStatus {
        audit_policy: gateway.audit_policy(),
        audit_sinks,
        targets_file: gateway.options().targets_file.is_some(),
        targets,
        ignored: loaded.ignored,
        last_load,
        serving_since,
        providers: providers
            .into_iter()
            .map(|((org, provider), (active, aside))| {
                json!({ "org": org, "provider": provider, "active": active, "set_aside": aside })
            })
            .collect(),
    })
}

/// The doctor's findings about this server (admins only).
pub(crate) async fn doctor(
    state: &AppState,
    p: &Principal,
) -> Result<crate::doctor::Report, ApiError> {
    let grant = allow_on(p, Op::Doctor, On::Unowned)?;
    let gateway = &state.shared.gateway;
    let d = &state.shared.deployment;
    let targets = gateway.options().targets_file.as_ref().map(|_| {
        let (loaded, last, _) = gateway.targets_status();
        match last.and_then(|l| l.error) {
            Some(e) => Err(e),
            None => Ok(loaded.targets.len()),
        }
    });
    let deployment = crate::doctor::Deployment {
        data_dir: d.data_dir.clone(),
        uid: d.uid,
        tls_cert: d.tls_cert.clone(),
        keys_from: d
            .keys_from
            .clone()
            .or_else(|| state.keys_from().map(str::to_owned)),
        targets,
        key_file: d.key_file.clone(),
        sinks: state
            .shared
            .sinks
            .states
            .iter()
            .map(|s| s.status())
            .collect(),
    };
    Ok(crate::doctor::examine(vault(state, &grant), &deployment).await)
}

/// Whether the server can serve: the master keys open the vault and the store answers within a
/// second, whatever the database does (the driver's words go to the log, not to the prober).
/// Not an admin operation: anyone may ask.
pub(crate) async fn ready(state: &AppState) -> Result<(), ApiError> {
    let vault = state.vault.serving();
    if !vault.audit_chain_ok() {
        return Err(ApiError::Unavailable(
            "the master keys do not open this vault".into(),
        ));
    }
    let away = || ApiError::Unavailable(crate::error::STORE_UNAVAILABLE.to_owned());
    // Known to be away (a watcher notices when it is back): say so at once.
    if !vault.store_available() {
        return Err(away());
    }
    match tokio::time::timeout(std::time::Duration::from_millis(900), vault.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            Err(away())
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer within 900 ms");
            Err(away())
        }
    }
}

/// Every live console session, of tokens and people (admins).
pub(crate) async fn list_sessions(
    state: &AppState,
    p: &Principal,
) -> Result<Vec<keyward_store::SessionView>, ApiError> {
    let grant = allow_on(p, Op::ListSessions, On::Unowned)?;
    Ok(vault(state, &grant).list_ui_sessions().await?)
}

/// Ends a console session by its listed id (admins); audited.
pub(crate) async fn end_session(state: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    let grant = allow_on(p, Op::EndSession, On::Unowned)?;
    super::plain_id("a session id", id)?;
    if vault(state, &grant)
        .end_ui_session_by_handle(id, grant.actor())
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no live session {id}")))
    }
}

/// Whether single sign-on is configured and its provider answers (admins).
pub(crate) async fn sso_status(
    state: &AppState,
    p: &Principal,
) -> Result<crate::identity::oidc::SsoStatus, ApiError> {
    allow_on(p, Op::ListSessions, On::Unowned)?;
    Ok(match state.sso() {
        Some(sso) => sso.status(state.token_sign_in()).await,
        None => crate::identity::oidc::SsoStatus {
            configured: false,
            issuer: None,
            client_id: None,
            redirect_url: None,
            id_token_algs: Vec::new(),
            rules: 0,
            reachable: false,
            key_ids: Vec::new(),
            logout_at_provider: false,
            token_sign_in: state.token_sign_in(),
            error: None,
        },
    })
}
