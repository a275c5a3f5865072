//! The Sessions page (admins): everyone signed in to the console, people and tokens, and a
//! button to end any session.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Chrome, UiSession, failed, when};
use crate::{AppState, ops};

struct SessionRow {
    id: String,
    who: String,
    sso: bool,
    yours: bool,
    roles: String,
    from: String,
    created: String,
    ends: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/sessions.html")]
struct SessionsPage {
    chrome: Chrome,
    issuer: Option<String>,
    rows: Vec<SessionRow>,
}

pub(super) async fn sessions(
    State(state): State<AppState>,
    session: UiSession,
    axum::extract::Query(q): axum::extract::Query<super::form::NoticeQuery>,
) -> Response {
    let p = &session.0.principal;
    let list = match ops::server::list_sessions(&state, p).await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let me = p.actor();
    SessionsPage {
        chrome: Chrome::new(&session.0, "sessions", q.notice.as_deref()),
        issuer: state.sso().map(|s| s.issuer().to_owned()),
        rows: list
            .into_iter()
            .map(|s| SessionRow {
                yours: s.actor == me,
                sso: s.kind == "sso",
                roles: s
                    .grants
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                who: s.actor,
                id: s.id,
                from: s.from.unwrap_or_default(),
                created: when(Some(s.created_at)),
                ends: when(Some(s.ends_at)),
            })
            .collect(),
    }
    .into_response()
}

pub(super) async fn session_end(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    match ops::server::end_session(&state, &session.0.principal, &id).await {
        Ok(()) => Redirect::to("/ui/sessions?notice=session_ended").into_response(),
        Err(e) => failed(e),
    }
}
