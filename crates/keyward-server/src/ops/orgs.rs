//! Organizations: list, create, change.

use keyward_core::OrgId;
use keyward_core::resolve::Strategy;
use keyward_store::{Organization, Principal};

use super::{allow_on, vault};
use crate::access::{self, On, Op};
use crate::{ApiError, AppState};

/// The organizations `p` may see: every one for an admin, else its own.
pub(crate) async fn list(state: &AppState, p: &Principal) -> Result<Vec<Organization>, ApiError> {
    let grant = allow_on(p, Op::ListOrgs, access::scope_of(p, None, On::Everywhere))?;
    let all = vault(state, &grant).list_orgs().await?;
    Ok(all
        .into_iter()
        .filter(|o| grant.org().is_none_or(|own| *own == o.id))
        .collect())
}

/// The ids of [`list`], for the pickers of forms.
pub(crate) async fn ids(state: &AppState, p: &Principal) -> Result<Vec<String>, ApiError> {
    Ok(list(state, p)
        .await?
        .into_iter()
        .map(|o| o.id.to_string())
        .collect())
}

/// A new organization.
#[derive(Debug)]
pub(crate) struct NewOrg {
    pub(crate) id: OrgId,
    pub(crate) name: Option<String>,
    pub(crate) strategy: Option<Strategy>,
}

/// Whether `p` may create organizations.
pub(crate) fn may_create(p: &Principal) -> Result<(), ApiError> {
    allow_on(p, Op::CreateOrg, On::Unowned).map(|_| ())
}

pub(crate) async fn create(
    state: &AppState,
    p: &Principal,
    new: NewOrg,
) -> Result<Organization, ApiError> {
    let grant = allow_on(p, Op::CreateOrg, On::Unowned)?;
    let vault = vault(state, &grant);
    let mut org = vault
        .create_org(&new.id, new.name.as_deref(), grant.actor())
        .await?;
    if let Some(strategy) = new.strategy {
        org = vault
            .set_org_strategy(&new.id, strategy, grant.actor())
            .await?;
    }
    Ok(org)
}

/// A change of an organization; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub(crate) struct OrgChange {
    pub(crate) strategy: Option<Strategy>,
    /// `Some(None)`: back to the server's default.
    pub(crate) env_fallback: Option<Option<bool>>,
}

pub(crate) async fn change(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    change: OrgChange,
) -> Result<Organization, ApiError> {
    let grant = allow_on(p, Op::ChangeOrg, On::Org(org))?;
    // The environment fallback hands the server's own variables to the organization.
    let fallback_grant = match change.env_fallback {
        Some(_) => Some(allow_on(p, Op::SetEnvFallback, On::Org(org))?),
        None => None,
    };
    if change.strategy.is_none() && change.env_fallback.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give strategy or env_fallback".into(),
        ));
    }
    let mut changed = vault(state, &grant).get_org(org).await?;
    if let Some(strategy) = change.strategy {
        changed = vault(state, &grant)
            .set_org_strategy(org, strategy, grant.actor())
            .await?;
    }
    if let (Some(value), Some(grant)) = (change.env_fallback, fallback_grant) {
        changed = vault(state, &grant)
            .set_org_env_fallback(org, value, grant.actor())
            .await?;
    }
    Ok(changed)
}
