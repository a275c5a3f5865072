//! The audit log (read, verify) and gateway usage.

use keyward_core::audit::{AuditEvent, EventFilter};
use keyward_core::{Millis, OrgId};
use keyward_store::{EventPage, Principal, Usage, UsageBucket, UsageSubject, VerifyReport};

use super::{allow_on, listed, vault};
use crate::access::{self, On, Op};
use crate::{ApiError, AppState};

/// Audit events matching `filter`, newest first, at most `limit`: of the organization the
/// filter names (else the caller's own, else for an admin every one). The listing reads back a
/// bounded number of events (`EventPage::next` goes on).
pub(crate) async fn events(
    state: &AppState,
    p: &Principal,
    mut filter: EventFilter,
    limit: i64,
) -> Result<EventPage, ApiError> {
    let named = match filter.org.as_deref() {
        Some(o) => Some(OrgId::new(o).map_err(|_| {
            ApiError::NotFound(format!(
                "organization '{}' not found",
                keyward_core::secret_like::shown(o)
            ))
        })?),
        None => None,
    };
    let grant = allow_on(
        p,
        Op::ReadEvents,
        access::scope_of(p, named.as_ref(), On::Everywhere),
    )?;
    listed(state, &grant).await?;
    filter.org = grant.org().map(ToString::to_string);
    Ok(vault(state, &grant)
        .list_events_page(&filter, limit)
        .await?)
}

/// The last events about one thing of `org` (a credential's page), at most `limit`.
pub(crate) async fn about(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    target: &str,
    action: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEvent>, ApiError> {
    let grant = allow_on(p, Op::ReadEvents, On::Org(org))?;
    let filter = EventFilter {
        target: Some(target.to_owned()),
        org: Some(org.to_string()),
        action: action.map(str::to_owned),
        ..EventFilter::default()
    };
    Ok(vault(state, &grant).list_events(&filter, limit).await?)
}

/// Verifies the whole audit chain (admins).
pub(crate) async fn verify(state: &AppState, p: &Principal) -> Result<VerifyReport, ApiError> {
    let grant = allow_on(p, Op::VerifyEvents, On::Unowned)?;
    Ok(vault(state, &grant).verify_events().await?)
}

/// Verifies at most `max` events appended since the last verified checkpoint, and moves it
/// (admins).
pub(crate) async fn verify_new(
    state: &AppState,
    p: &Principal,
    max: i64,
) -> Result<VerifyReport, ApiError> {
    let grant = allow_on(p, Op::VerifyEvents, On::Unowned)?;
    Ok(vault(state, &grant).verify_new_events(max).await?)
}

/// How far the chain was verified, and when (admins).
pub(crate) async fn verified_checkpoint(
    state: &AppState,
    p: &Principal,
) -> Result<Option<(i64, Millis)>, ApiError> {
    let grant = allow_on(p, Op::VerifyEvents, On::Unowned)?;
    Ok(vault(state, &grant).verified_checkpoint().await?)
}

/// Gateway usage of an organization's credentials, gateway tokens and static targets.
pub(crate) async fn usage(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
) -> Result<Vec<Usage>, ApiError> {
    let grant = allow_on(p, Op::ReadUsage, On::Org(org))?;
    listed(state, &grant).await?;
    Ok(vault(state, &grant).usage(org).await?)
}

/// One subject's requests per hour since `since`.
pub(crate) async fn usage_hourly(
    state: &AppState,
    p: &Principal,
    org: &OrgId,
    subject: UsageSubject,
    id: &str,
    since: Millis,
) -> Result<Vec<UsageBucket>, ApiError> {
    let grant = allow_on(p, Op::ReadUsage, On::Org(org))?;
    Ok(vault(state, &grant)
        .usage_hourly(org, subject, id, since)
        .await?)
}
