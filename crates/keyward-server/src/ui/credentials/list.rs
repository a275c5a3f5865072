//! The credentials table: filtered by organization and provider, searched, sorted, paged.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use keyward_core::{Millis, PROVIDERS, Provider};
use keyward_store::{CredentialSort, HOUR_MS};
use serde::Deserialize;

use super::{badge, display_name, encode};
use crate::ui::form::named_org;
use crate::ui::{Chrome, UiSession, failed, visible_orgs, when};
use crate::{AppState, ops};

/// Rows per page of the table.
const PAGE: u64 = 50;

struct Row {
    id: String,
    name: String,
    org: String,
    provider: String,
    key_hint: String,
    status: &'static str,
    badge: &'static str,
    active: bool,
    priority: i64,
    weight: i64,
    last_used: String,
    /// The exact time, on hover.
    last_used_at: String,
    last_test: String,
    requests_24h: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credentials.html")]
struct ListPage {
    chrome: Chrome,
    orgs: Vec<String>,
    /// The organization filter; empty for all.
    org: String,
    providers: Vec<(&'static str, &'static str)>,
    /// The provider filter; empty for all.
    provider: String,
    /// The search text (name or key hint); the sort's word.
    search: String,
    sort: &'static str,
    rows: Vec<Row>,
    total: u64,
    /// Links to the pages before and after, with the filters kept.
    prev: Option<String>,
    next: Option<String>,
    first: u64,
    last: u64,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    org: Option<String>,
    provider: Option<String>,
    /// Only credentials whose name or key hint holds this.
    q: Option<String>,
    /// `listing` (default), `name`, `updated` or `last_used`.
    sort: Option<String>,
    page: Option<u64>,
    notice: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<ListQuery>,
) -> Response {
    let p = &session.0.principal;
    let org = match named_org(q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let provider = q
        .provider
        .filter(|p| !p.is_empty())
        .and_then(|p| Provider::get(&p).ok());
    let orgs = match visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let page = q.page.unwrap_or(0);
    // A key pasted into the search box is not searched for, nor shown back.
    let search =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty() && !keyward_core::secret_like::looks_like_secret(s))
            .map(|s| s.chars().take(100).collect::<String>())
            .unwrap_or_default();
    let sort = CredentialSort::parse(q.sort.as_deref().unwrap_or("")).unwrap_or_default();
    let listing = ops::credentials::Listing {
        org,
        provider,
        search: Some(search.clone()),
        sort,
        limit: PAGE,
        offset: page.saturating_mul(PAGE),
    };
    let (creds, total, org) = match ops::credentials::list(&state, p, listing).await {
        Ok(page) => (page.items, page.total, page.org),
        Err(e) => return failed(e),
    };
    let day_ago = Millis(Millis::now().0 - 24 * HOUR_MS);
    let recent = match ops::credentials::recent_requests(&state, p, org.as_ref(), day_ago).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let now = Millis::now();
    let rows = creds
        .into_iter()
        .map(|c| {
            let (status, badge) = badge(&c);
            Row {
                requests_24h: recent.get(c.id.as_str()).copied().unwrap_or(0),
                id: c.id.to_string(),
                provider: display_name(&c.provider),
                name: c.name.to_string(),
                org: c.org.to_string(),
                key_hint: c.key_hint,
                status,
                badge,
                active: c.active,
                priority: c.priority,
                weight: c.weight,
                last_used: crate::ui::ago(c.last_used_at, now),
                last_used_at: when(c.last_used_at),
                // The outcome only (`unreachable`, not why): the why is on its own page.
                last_test: c.last_test_result.as_deref().map_or_else(
                    || "-".to_owned(),
                    |r| r.split(':').next().unwrap_or(r).to_owned(),
                ),
            }
        })
        .collect::<Vec<_>>();
    let org_s = org.map(|o| o.to_string()).unwrap_or_default();
    let provider_s = provider.map(|p| p.id.to_owned()).unwrap_or_default();
    let link = |p: u64| {
        format!(
            "/ui/credentials?org={}&provider={}&q={}&sort={}&page={p}",
            encode(&org_s),
            encode(&provider_s),
            encode(&search),
            sort.as_str()
        )
    };
    let first = page * PAGE + u64::from(!rows.is_empty());
    let last = page * PAGE + rows.len() as u64;
    ListPage {
        chrome: Chrome::new(&session.0, "credentials", q.notice.as_deref()),
        orgs,
        org: org_s.clone(),
        providers: PROVIDERS.iter().map(|p| (p.id, p.display_name)).collect(),
        provider: provider_s.clone(),
        search: search.clone(),
        sort: sort.as_str(),
        prev: (page > 0).then(|| link(page - 1)),
        next: (last < total).then(|| link(page + 1)),
        rows,
        total,
        first,
        last,
    }
    .into_response()
}
