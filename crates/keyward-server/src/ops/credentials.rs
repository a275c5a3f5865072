//! Credentials: list, read, create, change, activate, deactivate, delete, test, and the models
//! a key reaches.

use std::collections::HashMap;
use std::time::Duration;

use keyward_core::credential::{CredentialUpdate, CredentialView, NewCredential};
use keyward_core::{CredentialId, Millis, OrgId, Provider};
use keyward_store::{CredentialSort, Principal, UsageSubject};

use super::{allow_on, checked, listed, lookup, vault};
use crate::access::{self, On, Op};
use crate::{ApiError, AppState};

/// A listing of credentials: of the organization named (else the caller's own, else for an
/// admin all of them), narrowed and ordered, one page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub(crate) org: Option<OrgId>,
    pub(crate) provider: Option<&'static Provider>,
    /// Only names or key hints holding this (any case).
    pub(crate) search: Option<String>,
    pub(crate) sort: CredentialSort,
    pub(crate) limit: u64,
    pub(crate) offset: u64,
}

/// One page of credentials, masked.
#[derive(Debug)]
pub(crate) struct Page {
    /// The organization listed; `None`: all of them.
    pub(crate) org: Option<OrgId>,
    pub(crate) items: Vec<CredentialView>,
    /// Rows in all.
    pub(crate) total: u64,
}

pub(crate) async fn list(
    state: &AppState,
    p: &Principal,
    listing: Listing,
) -> Result<Page, ApiError> {
    let grant = allow_on(
        p,
        Op::ListCredentials,
        access::scope_of(p, listing.org.as_ref(), On::Everywhere),
    )?;
    listed(state, &grant).await?;
    let (items, total) = vault(state, &grant)
        .find_credentials(
            grant.org(),
            listing.provider,
            listing.search.as_deref().filter(|s| !s.is_empty()),
            listing.sort,
            listing.limit,
            listing.offset,
        )
        .await?;
    Ok(Page {
        org: grant.org().cloned(),
        items,
        total,
    })
}

/// An organization's credentials, all of them (the admin guide's listing): an organization
/// that does not exist is "not found".
pub(crate) async fn of_org(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
) -> Result<Vec<CredentialView>, ApiError> {
    let grant = allow_on(p, Op::ListCredentials, On::Org(org))?;
    let vault = vault(state, &grant);
    vault.require_org(org).await?;
    Ok(vault.list_credentials(Some(org), None).await?)
}

/// Requests per credential since `since` (the console's list shows the last day's).
pub(crate) async fn recent_requests(
    state: &AppState,
    p: &Principal,
    org: Option<&OrgId>,
    since: Millis,
) -> Result<HashMap<String, u64>, ApiError> {
    let grant = allow_on(p, Op::ReadUsage, access::scope_of(p, org, On::Everywhere))?;
    Ok(vault(state, &grant)
        .recent_requests(grant.org(), UsageSubject::Credential, since)
        .await?)
}

/// Parses a credential id as a path gives it.
pub(crate) fn parse_id(id: &str) -> Result<CredentialId, ApiError> {
    Ok(CredentialId::new(id)?)
}

/// The credential `id`, if `p` may do `op` on it; one of another organization is "not found",
/// exactly like one that does not exist.
async fn get(
    state: &AppState,
    p: &Principal,
    id: &str,
    op: Op,
) -> Result<(CredentialView, crate::access::Grant), ApiError> {
    let id = parse_id(id)?;
    checked(
        p,
        op,
        lookup(state).get_credential(&id).await,
        |c: &CredentialView| &c.org,
        || ApiError::NotFound(format!("credential {id} not found")),
    )
}

/// Reads one credential, masked.
pub(crate) async fn read(
    state: &AppState,
    p: &Principal,
    id: &str,
) -> Result<CredentialView, ApiError> {
    view(state, p, id, Op::ReadCredential).await
}

/// The credential `id`, masked, if `p` may do `op` on it (what a page shows before an action).
pub(crate) async fn view(
    state: &AppState,
    p: &Principal,
    id: &str,
    op: Op,
) -> Result<CredentialView, ApiError> {
    Ok(get(state, p, id, op).await?.0)
}

/// Whether `p` may change credentials of `org` (for what a form offers).
pub(crate) fn may_write(p: &Principal, org: &OrgId) -> Result<(), ApiError> {
    allow_on(p, Op::WriteCredential, On::Org(org)).map(|_| ())
}

pub(crate) async fn create(
    state: &AppState,
    p: &Principal,
    new: NewCredential,
) -> Result<CredentialView, ApiError> {
    let grant = allow_on(p, Op::WriteCredential, On::Org(&new.org))?;
    Ok(vault(state, &grant)
        .add_credential(new, grant.actor())
        .await?)
}

/// Changes a credential; `if_version` makes it a compare-and-set. Changing where the key is
/// sent takes the key in the same change (`access::key_move`).
pub(crate) async fn update(
    state: &AppState,
    p: &Principal,
    id: &str,
    if_version: Option<i64>,
    update: CredentialUpdate,
) -> Result<CredentialView, ApiError> {
    let (view, grant) = get(state, p, id, Op::WriteCredential).await?;
    access::key_move(
        &view.fields,
        &update.fields,
        view.key_hint != keyward_core::credential::NO_KEY_HINT,
        update.secret.is_some(),
    )
    .map_err(|denied| match denied {
        access::Denied::Forbidden(why) => ApiError::Unprocessable(why),
        access::Denied::Unseen => ApiError::NotFound(format!("credential {id} not found")),
    })?;
    Ok(vault(state, &grant)
        .update_credential(&view.id, if_version, update, grant.actor())
        .await?)
}

pub(crate) async fn set_active(
    state: &AppState,
    p: &Principal,
    id: &str,
    active: bool,
) -> Result<CredentialView, ApiError> {
    let (view, grant) = get(state, p, id, Op::WriteCredential).await?;
    Ok(vault(state, &grant)
        .set_credential_active(&view.id, active, grant.actor())
        .await?)
}

pub(crate) async fn delete(state: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    let (view, grant) = get(state, p, id, Op::WriteCredential).await?;
    Ok(vault(state, &grant)
        .delete_credential(&view.id, grant.actor())
        .await?)
}

/// Tests a credential's key against its provider, and stores and audits the outcome, as
/// `keyward cred test` does.
pub(crate) async fn test(
    state: &AppState,
    p: &Principal,
    id: &str,
    timeout: Duration,
) -> Result<(keyward_probe::TestOutcome, CredentialView), ApiError> {
    let (view, grant) = get(state, p, id, Op::TestCredential).await?;
    let vault = vault(state, &grant);
    let (view, secret) = vault.open_credential(&view.id).await?;
    let provider = Provider::get(&view.provider)?;
    let endpoints = &state.shared.gateway.options().token_endpoints;
    let outcome =
        keyward_probe::test_key(provider, &view.fields, secret.as_ref(), timeout, endpoints).await;
    let view = vault
        .record_key_test(
            &view.id,
            outcome.is_ok(),
            &outcome.to_string(),
            grant.actor(),
        )
        .await?;
    Ok((outcome, view))
}

/// The models a credential's key reaches, by name (the provider's model list, through the
/// credential's base URL, as the key test asks); audited as `discover`. A provider that
/// refuses, or cannot be reached, is a 424 (failed dependency) that says which.
pub(crate) async fn discover(
    state: &AppState,
    p: &Principal,
    id: &str,
    timeout: Duration,
) -> Result<(CredentialView, Vec<String>), ApiError> {
    let (view, grant) = get(state, p, id, Op::TestCredential).await?;
    let vault = vault(state, &grant);
    let (view, secret) = vault.open_credential(&view.id).await?;
    let provider = Provider::get(&view.provider)?;
    let endpoints = &state.shared.gateway.options().token_endpoints;
    let found =
        keyward_probe::discover_models(provider, &view.fields, secret.as_ref(), timeout, endpoints)
            .await;
    vault.record_discovery(&view, &found, grant.actor()).await?;
    match found {
        Ok(models) => Ok((view, models)),
        Err(why @ keyward_probe::TestOutcome::Unsupported(_)) => Err(ApiError::Unprocessable(
            format!("cannot list the models: {why}"),
        )),
        Err(why) => Err(ApiError::Upstream(format!(
            "{} did not list the models: {why}",
            provider.display_name
        ))),
    }
}

/// Whether `p` may add credentials somewhere (for the console's Add button and form).
pub(crate) fn may_add(p: &Principal) -> bool {
    super::may(
        p,
        Op::WriteCredential,
        access::scope_of(p, None, On::Everywhere),
    )
}
