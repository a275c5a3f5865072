//! Admin operations, each once, with its access rule: the REST routes and the console are
//! adapters that parse a request, call one of these, and render the answer (issue 20: this
//! module grows until every admin operation is here).
//!
//! A thing of another organization is "not found" for a caller who cannot see it, so that
//! existence does not leak; a caller who sees it but lacks the role is "forbidden". A lookup
//! that fails for another reason (the store away) stays that failure, never a "not found".

use keyward_store::{GatewayTokenView, Role, TokenView, VaultError};

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// Refuses an id that looks like a key: a token pasted where its id belongs is not echoed,
/// nor looked up.
fn plain_id(what: &str, id: &str) -> Result<(), ApiError> {
    if keyward_core::secret_like::looks_like_secret(id) {
        return Err(keyward_core::secret_like::refused(what).into());
    }
    Ok(())
}

/// A lookup's "not found" as the operation words it; any other failure as it is.
fn found<T>(got: Result<T, VaultError>, not_found: impl Fn() -> ApiError) -> Result<T, ApiError> {
    got.map_err(|e| match e {
        VaultError::NotFound(_) => not_found(),
        other => other.into(),
    })
}

/// Revokes an API token: an admin token by an admin; an organization's token by an admin or
/// that organization's org_admin.
pub(crate) async fn revoke_token(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<TokenView, ApiError> {
    plain_id("token id", id)?;
    let not_found = || ApiError::NotFound(format!("token {id} not found"));
    let token = found(state.vault.get_token(id).await, not_found)?;
    match &token.org {
        None => caller.require_admin().map_err(|_| not_found())?,
        Some(o) => {
            if !caller.0.sees(o) {
                return Err(not_found());
            }
            caller.require(o, &[Role::OrgAdmin])?;
        }
    }
    Ok(state.vault.revoke_token(id, &caller.actor()).await?)
}

/// Revokes a gateway token: by an admin, or its organization's org_admin.
pub(crate) async fn revoke_gateway_token(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<GatewayTokenView, ApiError> {
    plain_id("gateway token id", id)?;
    let not_found = || ApiError::NotFound(format!("gateway token {id} not found"));
    let token = found(state.vault.get_gateway_token(id).await, not_found)?;
    if !caller.0.sees(&token.org) {
        return Err(not_found());
    }
    caller.require(&token.org, &[Role::OrgAdmin])?;
    Ok(state
        .vault
        .revoke_gateway_token(id, &caller.actor())
        .await?)
}
