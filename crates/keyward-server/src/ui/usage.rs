//! The Usage page: gateway requests per credential, gateway token and static target, with
//! charts of the last day and week.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use keyward_core::{Millis, OrgId};
use keyward_store::{HOUR_MS, UsageSubject};

use super::chart::{Chart, chart};
use super::form::named_org;
use super::spend::{Sort, SpendView};
use super::{Chrome, UiSession, failed, when};
use crate::{AppState, ops};

struct UsageRow {
    org: String,
    kind: &'static str,
    name: String,
    provider: String,
    requests: u64,
    last_used: String,
    statuses: String,
    day: Chart,
    week: Chart,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/usage.html")]
struct UsagePage {
    chrome: Chrome,
    orgs: Vec<String>,
    org: String,
    rows: Vec<UsageRow>,
    /// The organization's spend, when one is shown.
    spend: Option<SpendView>,
}

/// `?org=`, `?notice=` and the spend table's sort.
#[derive(serde::Deserialize)]
pub(super) struct UsageQuery {
    org: Option<String>,
    notice: Option<String>,
    #[serde(flatten)]
    sort: Sort,
}

pub(super) async fn usage(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<UsageQuery>,
) -> Response {
    let p = &session.0.principal;
    let asked = match named_org(q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let orgs = match super::visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    // One organization (the one asked for, else the session's own), or for an admin who picks
    // none, all of them.
    let shown: Vec<OrgId> = match (&asked, p.home_org()) {
        (Some(o), _) | (None, Some(o)) => vec![o.clone()],
        (None, None) => orgs.iter().filter_map(|o| OrgId::new(o).ok()).collect(),
    };
    let mut all = Vec::new();
    for org in &shown {
        match ops::audit::usage(&state, p, org).await {
            Ok(u) => all.extend(u.into_iter().map(|u| (org.clone(), u))),
            Err(e) => return failed(e),
        }
    }
    let now = Millis::now();
    let mut rows = Vec::new();
    for (org, u) in all {
        let since = Millis(now.0 - 7 * 24 * HOUR_MS);
        let buckets = match ops::audit::usage_hourly(&state, p, &org, u.subject, &u.id, since).await
        {
            Ok(b) => b,
            Err(e) => return failed(e),
        };
        rows.push(UsageRow {
            org: org.to_string(),
            kind: match u.subject {
                UsageSubject::Credential => "credential",
                UsageSubject::GatewayToken => "gateway token",
                UsageSubject::Target => "static target",
                UsageSubject::Environment => "environment",
            },
            name: u.name.unwrap_or_else(|| format!("{} (deleted)", u.id)),
            provider: u.provider.unwrap_or_default(),
            requests: u.requests,
            last_used: when(Some(u.last_used_at)),
            statuses: u
                .statuses
                .iter()
                .map(|(s, n)| format!("{}: {n}", if s == "0" { "no answer" } else { s }))
                .collect::<Vec<_>>()
                .join(", "),
            day: chart("Last 24 hours", &buckets, now, 24, 1),
            week: chart("Last 7 days", &buckets, now, 7, 24),
        });
    }
    let spend = match shown.as_slice() {
        [org] if asked.is_some() || p.home_org().is_some() => {
            let page = format!("/ui/usage?org={org}");
            match super::spend::view(&state, &session, org, None, &page, &q.sort).await {
                Ok(v) => Some(v),
                Err(e) => return failed(e),
            }
        }
        _ => None,
    };
    UsagePage {
        chrome: Chrome::new(&session.0, "usage", q.notice.as_deref()),
        spend,
        orgs,
        org: asked
            .or_else(|| p.home_org().cloned())
            .map(|o| o.to_string())
            .unwrap_or_default(),
        rows,
    }
    .into_response()
}
