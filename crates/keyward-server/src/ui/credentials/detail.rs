//! A credential's own page: its fields, its last test, its audit events and its requests over
//! the last day and week.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use keyward_core::Millis;
use keyward_store::{HOUR_MS, UsageSubject};
use serde::Deserialize;

use super::form::label;
use super::{badge, credential, display_name};
use crate::access::Op;
use crate::ui::chart::{Chart, chart};
use crate::ui::event_rows::{EventRow, Names};
use crate::ui::{Chrome, UiSession, failed, when};
use crate::{AppState, ops};

#[derive(Template, WebTemplate)]
#[template(path = "ui/credential.html")]
struct DetailPage {
    chrome: Chrome,
    id: String,
    name: String,
    org: String,
    provider: String,
    key_hint: String,
    status: &'static str,
    badge: &'static str,
    active: bool,
    fields: Vec<(String, String)>,
    modalities: String,
    priority: i64,
    weight: i64,
    version: i64,
    kid: String,
    created: String,
    created_by: String,
    updated: String,
    updated_by: String,
    last_used: String,
    last_test: String,
    last_tested: String,
    tests: Vec<EventRow>,
    events: Vec<EventRow>,
    day: Chart,
    week: Chart,
    spend: crate::ui::spend::SpendView,
}

#[derive(Deserialize)]
pub(super) struct DetailQuery {
    notice: Option<String>,
    #[serde(flatten)]
    sort: crate::ui::spend::Sort,
}

pub(super) async fn detail(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let p = &session.0.principal;
    let view = match credential(&state, &session, &id, Op::ReadCredential).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let target = format!("credential:{}", view.id);
    let now = Millis::now();
    let (tests, events, buckets, names) = match tokio::try_join!(
        ops::audit::about(&state, p, &view.org, &target, Some("test"), 10),
        ops::audit::about(&state, p, &view.org, &target, None, 50),
        ops::audit::usage_hourly(
            &state,
            p,
            &view.org,
            UsageSubject::Credential,
            view.id.as_str(),
            Millis(now.0 - 7 * 24 * HOUR_MS),
        ),
        Names::load(&state, p),
    ) {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let (status, badge) = badge(&view);
    let page = format!("/ui/credentials/{}", view.id);
    let spend = match crate::ui::spend::view(
        &state,
        &session,
        &view.org,
        Some((UsageSubject::Credential, view.id.to_string())),
        &page,
        &q.sort,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    DetailPage {
        spend,
        chrome: Chrome::new(&session.0, "credentials", q.notice.as_deref()),
        id: view.id.to_string(),
        name: view.name.to_string(),
        org: view.org.to_string(),
        provider: display_name(&view.provider),
        key_hint: view.key_hint.clone(),
        status,
        badge,
        active: view.active,
        fields: view
            .fields
            .iter()
            .map(|(k, v)| {
                let name = if k == "base_url" {
                    "API Base URL".to_owned()
                } else {
                    label(k)
                };
                (name, v.clone())
            })
            .collect(),
        modalities: if view.modalities.is_empty() {
            "all".to_owned()
        } else {
            view.modalities
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
        priority: view.priority,
        weight: view.weight,
        version: view.version,
        kid: view.kid.clone(),
        created: when(Some(view.created_at)),
        created_by: names.of(&view.created_by),
        updated: when(Some(view.updated_at)),
        updated_by: names.of(&view.updated_by),
        last_used: when(view.last_used_at),
        last_test: view
            .last_test_result
            .clone()
            .unwrap_or_else(|| "not tested yet".to_owned()),
        last_tested: view
            .last_tested_at
            .map(|t| when(Some(t)))
            .unwrap_or_default(),
        tests: tests
            .into_iter()
            .map(|e| EventRow::new(e, &names))
            .collect(),
        events: events
            .into_iter()
            .map(|e| EventRow::new(e, &names))
            .collect(),
        day: chart("Last 24 hours", &buckets, now, 24, 1),
        week: chart("Last 7 days", &buckets, now, 7, 24),
    }
    .into_response()
}
