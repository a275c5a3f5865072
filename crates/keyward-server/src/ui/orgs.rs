//! The Organizations page: the organizations a session sees, creating one (admins), and each
//! one's strategy.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyward_core::OrgId;
use keyward_core::resolve::Strategy;

use super::form::{NoticeQuery, Typed, typed};
use super::{Chrome, UiSession, failed, when};
use crate::{ApiError, AppState, ops};

struct OrgRow {
    id: String,
    name: String,
    strategy: &'static str,
    env_fallback: &'static str,
    created: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/orgs.html")]
struct OrgsPage {
    chrome: Chrome,
    rows: Vec<OrgRow>,
    strategies: [&'static str; 3],
    error: Option<String>,
}

async fn orgs_page(
    state: &AppState,
    session: &UiSession,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let visible = match ops::orgs::list(state, &session.0.principal).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let rows = visible
        .into_iter()
        .map(|o| OrgRow {
            id: o.id.to_string(),
            name: o.name,
            strategy: o.strategy.as_str(),
            env_fallback: match o.env_fallback {
                None => "server default",
                Some(true) => "on",
                Some(false) => "off",
            },
            created: when(Some(o.created_at)),
        })
        .collect();
    OrgsPage {
        chrome: Chrome::new(&session.0, "orgs", notice),
        rows,
        strategies: [
            Strategy::Priority.as_str(),
            Strategy::RoundRobin.as_str(),
            Strategy::Weighted.as_str(),
        ],
        error,
    }
    .into_response()
}

pub(super) async fn orgs(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NoticeQuery>,
) -> Response {
    orgs_page(&state, &session, q.notice.as_deref(), None).await
}

pub(super) async fn org_create(
    State(state): State<AppState>,
    session: UiSession,
    Form(form): Form<Typed>,
) -> Response {
    let p = &session.0.principal;
    let id = match OrgId::new(typed(&form, "id")) {
        Ok(id) => id,
        // Whoever may not create one is told so before what is wrong with the name.
        Err(e) => match ops::orgs::may_create(p) {
            Ok(()) => return orgs_page(&state, &session, None, Some(e.to_string())).await,
            Err(refused) => return failed(refused),
        },
    };
    let new = ops::orgs::NewOrg {
        id,
        name: Some(typed(&form, "name").to_owned()).filter(|n| !n.is_empty()),
        strategy: None,
    };
    match ops::orgs::create(&state, p, new).await {
        Ok(_) => Redirect::to("/ui/orgs?notice=org_created").into_response(),
        Err(e) => match e.form_words() {
            Some(why) => orgs_page(&state, &session, None, Some(why.to_owned())).await,
            None => failed(e),
        },
    }
}

pub(super) async fn org_strategy(
    State(state): State<AppState>,
    session: UiSession,
    Path(org): Path<String>,
    Form(form): Form<Typed>,
) -> Response {
    let Ok(org) = OrgId::new(&org) else {
        return failed(ApiError::NotFound("no such organization".into()));
    };
    let strategy: Strategy = match typed(&form, "strategy").parse() {
        Ok(s) => s,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    let change = ops::orgs::OrgChange {
        strategy: Some(strategy),
        env_fallback: None,
    };
    match ops::orgs::change(&state, &session.0.principal, &org, change).await {
        Ok(_) => Redirect::to("/ui/orgs?notice=strategy").into_response(),
        Err(e) => failed(e),
    }
}
