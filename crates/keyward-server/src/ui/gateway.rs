//! The Gateway page: the static targets served (an organization's own, for its tokens), their
//! last load, and reloading the targets file (admins).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::form::{OrgQuery, named_org};
use super::{Chrome, UiSession, failed, when};
use crate::access::{On, Op};
use crate::{AppState, LoadTrigger, ops};

struct TargetRow {
    id: String,
    provider: String,
    org: String,
    base_url: String,
    reference: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/gateway.html")]
struct GatewayPage {
    chrome: Chrome,
    targets: Vec<TargetRow>,
    ignored: Vec<String>,
    last_load: String,
    last_error: Option<String>,
    serving_since: String,
    /// Whether the session may reload the targets file.
    reload: bool,
}

async fn gateway_page(
    state: &AppState,
    session: &UiSession,
    org: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let org = match named_org(org) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let status = match ops::server::gateway_status(state, &session.0.principal, org.as_ref()).await
    {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let (last, serving) = (status.last_load, status.serving_since);
    GatewayPage {
        reload: ops::may(&session.0.principal, Op::ReloadGateway, On::Unowned),
        chrome: Chrome::new(&session.0, "gateway", notice),
        targets: status
            .targets
            .into_iter()
            .map(|t| TargetRow {
                id: t.id,
                provider: t.provider,
                org: t.org,
                base_url: t.base_url,
                reference: t.reference.unwrap_or_default(),
            })
            .collect(),
        ignored: status.ignored,
        last_load: last.as_ref().map_or_else(
            || "never (no --gateway-config)".to_owned(),
            |l| format!("{} by {}", when(Some(l.at)), l.by.as_str()),
        ),
        last_error: last.and_then(|l| l.error),
        serving_since: serving.map_or_else(|| "-".to_owned(), |l| when(Some(l.at))),
    }
    .into_response()
}

pub(super) async fn gateway(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OrgQuery>,
) -> Response {
    gateway_page(&state, &session, q.org.as_deref(), q.notice.as_deref()).await
}

pub(super) async fn gateway_reload(State(state): State<AppState>, session: UiSession) -> Response {
    // A failed reload keeps the targets in use; the page shows why, from the last load.
    let notice =
        match ops::server::reload_gateway(&state, &session.0.principal, LoadTrigger::Console).await
        {
            Ok(Ok(_)) => "reloaded",
            Ok(Err(_)) => "reload_failed",
            Err(e) => return failed(e),
        };
    Redirect::to(&format!("/ui/gateway?notice={notice}")).into_response()
}
