//! The Audit Log page: events, filtered and paged (the listing reads a bounded number of
//! events), and for admins verifying the chain from the last checkpoint on.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyward_core::Millis;
use keyward_core::audit::EventFilter;
use keyward_store::HOUR_MS;
use serde::Deserialize;

use super::event_rows::{EventRow, Names};
use super::form::{named_org, url_query};
use super::{Chrome, UiSession, failed};
use crate::{ApiError, AppState, ops};

#[derive(Deserialize, Default)]
pub(super) struct EventsQuery {
    category: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    outcome: Option<String>,
    org: Option<String>,
    /// Only events of the last so many hours.
    hours: Option<i64>,
    /// A cursor: events before this sequence number.
    before: Option<i64>,
    /// An outcome code (after verifying).
    notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/events.html")]
struct EventsPage {
    chrome: Chrome,
    events: Vec<EventRow>,
    category: String,
    action: String,
    actor: String,
    outcome: String,
    org: String,
    hours: String,
    next: Option<String>,
    /// `Some(true)`: the chain was just verified; `Some(false)`: it does not verify; `None`:
    /// not verified on this request (or not an admin).
    verified: Option<bool>,
    /// The listing read back its budget of events and found none: say so, next to the link
    /// that goes on.
    scanned_only: bool,
    verify_words: String,
}

/// Events per page of the audit log.
const EVENTS_PAGE: i64 = 50;

pub(super) async fn events(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<EventsQuery>,
) -> Response {
    let p = &session.0.principal;
    let org = match named_org(q.org.as_deref()) {
        Ok(o) => o.or_else(|| p.home_org().cloned()),
        Err(e) => return failed(e),
    };
    let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
    let mut spec = Vec::new();
    for (key, value) in [
        ("category", text(&q.category)),
        ("action", text(&q.action)),
        ("actor", text(&q.actor)),
        ("outcome", text(&q.outcome)),
    ] {
        if !value.is_empty() {
            spec.push(format!("{key}={value}"));
        }
    }
    let mut filter: EventFilter = match spec.join(",").parse() {
        Ok(f) => f,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    filter.org = org.as_ref().map(ToString::to_string);
    filter.before = q.before;
    filter.since = q
        .hours
        .filter(|h| *h > 0)
        .map(|h| Millis(Millis::now().0 - h.saturating_mul(HOUR_MS)));
    // The page never reads the whole log: the listing has a scan budget, and the chain is
    // verified on request, from the last verified checkpoint on.
    let page = match ops::audit::events(&state, p, filter, EVENTS_PAGE).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let list = page.items;
    let (verified, verify_words) = match ops::audit::verified_checkpoint(&state, p).await {
        Err(ApiError::Forbidden(_)) => (
            None,
            "Verifying the chain needs an admin (keyward events verify).".to_owned(),
        ),
        Err(e) => return failed(e),
        Ok(checkpoint) => match (q.notice.as_deref(), checkpoint) {
            (Some("chain_broken"), _) => (
                Some(false),
                "The audit chain does NOT verify past the last checkpoint: run `keyward events verify` on the server for the event and why.".to_owned(),
            ),
            (_, Some((seq, at))) => (
                q.notice.as_deref().map(|n| n == "chain_ok"),
                format!(
                    "The audit chain was verified up to event #{seq} at {}.",
                    crate::ui::when(Some(at))
                ),
            ),
            (_, None) => (
                None,
                "The audit chain has not been verified from the console yet.".to_owned(),
            ),
        },
    };
    let names = match Names::load(&state, p).await {
        Ok(n) => n,
        Err(e) => return failed(e),
    };
    let scanned_only = list.is_empty() && page.next.is_some();
    let next = page.next.map(|before| {
        let mut url = url_query(&[
            ("category", text(&q.category)),
            ("action", text(&q.action)),
            ("actor", text(&q.actor)),
            ("outcome", text(&q.outcome)),
            (
                "org",
                org.as_ref().map(ToString::to_string).unwrap_or_default(),
            ),
            ("hours", q.hours.map(|h| h.to_string()).unwrap_or_default()),
        ]);
        url.push_str(&format!("&before={before}"));
        format!("/ui/events?{url}")
    });
    EventsPage {
        chrome: Chrome::new(&session.0, "events", q.notice.as_deref()),
        events: list.into_iter().map(|e| EventRow::new(e, &names)).collect(),
        category: text(&q.category),
        action: text(&q.action),
        actor: text(&q.actor),
        outcome: text(&q.outcome),
        org: org.map(|o| o.to_string()).unwrap_or_default(),
        hours: q.hours.map(|h| h.to_string()).unwrap_or_default(),
        next,
        scanned_only,
        verified,
        verify_words,
    }
    .into_response()
}

/// Events one press of "Verify new events" checks at most (about 15 us each): a log that grew
/// by more is verified over several presses, each a few seconds at most.
const VERIFY_PER_REQUEST: i64 = 200_000;

/// `POST /ui/events/verify` (admins): verifies the events appended since the last verified
/// checkpoint, and moves the checkpoint.
pub(super) async fn events_verify(State(state): State<AppState>, session: UiSession) -> Response {
    match ops::audit::verify_new(&state, &session.0.principal, VERIFY_PER_REQUEST).await {
        Ok(report) if report.ok() => Redirect::to("/ui/events?notice=chain_ok").into_response(),
        Ok(report) => {
            if let Some((seq, why)) = &report.problem {
                tracing::error!(seq, problem = %why, "the audit chain does not verify");
            }
            Redirect::to("/ui/events?notice=chain_broken").into_response()
        }
        Err(e) => failed(e),
    }
}
