//! API tokens and gateway tokens: list, create, revoke. A token is shown once, in what
//! [`create`] and [`create_gateway`] answer; listings never hold it.

use keyward_core::{Millis, OrgId, Provider};
use keyward_store::{GatewayTokenView, Principal, Role, TokenView};
use secrecy::SecretString;

use super::{allow, allow_on, checked, found, listed, lookup, plain_id, vault};
use crate::access::{self, On, Op};
use crate::{ApiError, AppState};

/// API tokens `p` may manage: every one for an admin, its organization's for an org_admin.
pub(crate) async fn list(state: &AppState, p: &Principal) -> Result<Vec<TokenView>, ApiError> {
    let grant = allow_on(p, Op::ListTokens, access::scope_of(p, None, On::Everywhere))?;
    Ok(vault(state, &grant).list_tokens(grant.org()).await?)
}

/// A new API token.
#[derive(Debug)]
pub(crate) struct NewToken {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// `None`: of no organization (admins' tokens).
    pub(crate) org: Option<OrgId>,
    pub(crate) expires_at: Option<Millis>,
}

/// Creates an API token: admins make any; an organization's admin, its own organization's
/// below admin.
pub(crate) async fn create(
    state: &AppState,
    p: &Principal,
    new: NewToken,
) -> Result<(SecretString, TokenView), ApiError> {
    let on = match &new.org {
        Some(o) => On::Org(o),
        None => On::Unowned,
    };
    let grant = allow_on(p, Op::CreateToken(new.role), on)?;
    Ok(vault(state, &grant)
        .create_token(
            &new.name,
            new.role,
            grant.org(),
            new.expires_at,
            grant.actor(),
        )
        .await?)
}

/// Revokes an API token: an admin token by an admin; an organization's token by an admin or
/// that organization's org_admin.
pub(crate) async fn revoke(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<TokenView, ApiError> {
    plain_id("token id", id)?;
    let not_found = || ApiError::NotFound(format!("token {id} not found"));
    let token = found(lookup(state).get_token(id).await, not_found)?;
    let on = match &token.org {
        Some(o) => On::Org(o),
        None => On::Unowned,
    };
    // An admin token is "not found" to whoever may not revoke it, as another organization's is.
    let grant = allow(p, Op::RevokeToken, on, not_found).map_err(|e| match (&token.org, e) {
        (None, ApiError::Forbidden(_)) => not_found(),
        (_, e) => e,
    })?;
    Ok(vault(state, &grant).revoke_token(id, grant.actor()).await?)
}

/// Gateway tokens of the organization named (else the caller's own, else for an admin all).
pub(crate) async fn list_gateway(
    state: &AppState,
    p: &Principal,
    org: Option<&OrgId>,
) -> Result<Vec<GatewayTokenView>, ApiError> {
    let grant = allow_on(
        p,
        Op::ListGatewayTokens,
        access::scope_of(p, org, On::Everywhere),
    )?;
    listed(state, &grant).await?;
    Ok(vault(state, &grant)
        .list_gateway_tokens(grant.org())
        .await?)
}

/// A new gateway token.
#[derive(Debug)]
pub(crate) struct NewGatewayToken {
    pub(crate) org: OrgId,
    pub(crate) name: String,
    /// Providers it may reach; empty for all.
    pub(crate) providers: Vec<&'static Provider>,
    /// Requests per minute; `None` for no limit.
    pub(crate) rpm: Option<i64>,
    pub(crate) expires_at: Option<Millis>,
}

/// Whether `p` may make gateway tokens of `org` (asked before a shown-once form is used up).
pub(crate) fn may_create_gateway(p: &Principal, org: &OrgId) -> Result<(), ApiError> {
    allow_on(p, Op::CreateGatewayToken, On::Org(org)).map(|_| ())
}

/// Whether `p` may make an API token with `role` of `org` (asked before a shown-once form is
/// used up).
pub(crate) fn may_create(p: &Principal, role: Role, org: Option<&OrgId>) -> Result<(), ApiError> {
    let on = org.map_or(On::Unowned, On::Org);
    allow_on(p, Op::CreateToken(role), on).map(|_| ())
}

pub(crate) async fn create_gateway(
    state: &AppState,
    p: &Principal,
    new: NewGatewayToken,
) -> Result<(SecretString, GatewayTokenView), ApiError> {
    let grant = allow_on(p, Op::CreateGatewayToken, On::Org(&new.org))?;
    Ok(vault(state, &grant)
        .create_gateway_token(
            &new.org,
            &new.name,
            &new.providers,
            new.rpm,
            new.expires_at,
            grant.actor(),
        )
        .await?)
}

/// Changes what a gateway token may do (its models, requests and tokens per minute): by an
/// admin, or its organization's org_admin.
pub(crate) async fn update_gateway(
    state: &AppState,
    p: &Principal,
    id: &str,
    models: Option<Vec<String>>,
    rpm: Option<Option<i64>>,
    tpm: Option<Option<i64>>,
) -> Result<GatewayTokenView, ApiError> {
    plain_id("gateway token id", id)?;
    let (token, grant) = checked(
        p,
        Op::CreateGatewayToken,
        lookup(state).get_gateway_token(id).await,
        |t: &GatewayTokenView| &t.org,
        || ApiError::NotFound(format!("gateway token {id} not found")),
    )?;
    Ok(vault(state, &grant)
        .update_gateway_token(&token.id, models, rpm, tpm, grant.actor())
        .await?)
}

/// Revokes a gateway token: by an admin, or its organization's org_admin.
pub(crate) async fn revoke_gateway(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<GatewayTokenView, ApiError> {
    plain_id("gateway token id", id)?;
    let (token, grant) = checked(
        p,
        Op::RevokeGatewayToken,
        lookup(state).get_gateway_token(id).await,
        |t: &GatewayTokenView| &t.org,
        || ApiError::NotFound(format!("gateway token {id} not found")),
    )?;
    Ok(vault(state, &grant)
        .revoke_gateway_token(&token.id, grant.actor())
        .await?)
}

/// Token names by actor (`token:ID`), so that pages show who acted by name: the names of the
/// tokens `p` may list (every one for an admin, its organization's for an org_admin), and its
/// own token's, which every caller knows (`whoami`); others stay `token:ID`, as in the API.
pub(crate) async fn names(
    state: &AppState,
    p: &Principal,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut names: std::collections::HashMap<String, String> =
        match access::check(p, Op::ListTokens, access::scope_of(p, None, On::Everywhere)) {
            Ok(grant) => vault(state, &grant)
                .list_tokens(grant.org())
                .await?
                .into_iter()
                .map(|t| (format!("token:{}", t.id), t.name))
                .collect(),
            Err(_) => Default::default(),
        };
    // Gateway tokens act in the gateway's events (a request audited under the policy's
    // log_all_access, a key set aside): by name too, where the caller may list them.
    if let Ok(grant) = access::check(
        p,
        Op::ListGatewayTokens,
        access::scope_of(p, None, On::Everywhere),
    ) {
        for t in vault(state, &grant)
            .list_gateway_tokens(grant.org())
            .await?
        {
            names.insert(
                format!("gateway_token:{}", t.id),
                format!("{} (gateway)", t.name),
            );
        }
    }
    names.insert(p.actor(), p.name.clone());
    Ok(names)
}
