//! The API Tokens page: the tokens a session may manage, making one (shown once), revoking
//! one.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyward_core::OrgId;
use keyward_store::Role;
use secrecy::ExposeSecret as _;

use super::form::{Made, NoticeQuery, Typed, sent_before, typed};
use super::{Chrome, UiSession, failed, when};
use crate::{ApiError, AppState, ops};

struct TokenRow {
    id: String,
    name: String,
    role: String,
    org: String,
    created: String,
    expires: String,
    last_used: String,
    state: &'static str,
    live: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/tokens.html")]
struct TokensPage {
    chrome: Chrome,
    orgs: Vec<String>,
    rows: Vec<TokenRow>,
    made: Option<Made>,
    error: Option<String>,
    /// This form's one-time id.
    once: String,
}

async fn tokens_page(
    state: &AppState,
    session: &UiSession,
    notice: Option<&str>,
    made: Option<Made>,
    error: Option<String>,
) -> Response {
    let (list, orgs) = match tokio::try_join!(
        ops::tokens::list(state, &session.0.principal),
        super::visible_orgs(state, session)
    ) {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let rows = list
        .into_iter()
        .map(|t| {
            let state = t.state.as_str();
            TokenRow {
                id: t.id,
                name: t.name,
                role: t.role.to_string(),
                org: t.org.map_or_else(|| "(all)".to_owned(), |o| o.to_string()),
                created: when(Some(t.created_at)),
                expires: t
                    .expires_at
                    .map_or_else(|| "never".to_owned(), |e| when(Some(e))),
                last_used: when(t.last_used_at),
                live: state == "active",
                state,
            }
        })
        .collect();
    TokensPage {
        chrome: Chrome::new(&session.0, "tokens", notice),
        orgs,
        rows,
        made,
        error,
        once: super::state::form_id(),
    }
    .into_response()
}

pub(super) async fn tokens(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NoticeQuery>,
) -> Response {
    tokens_page(&state, &session, q.notice.as_deref(), None, None).await
}

pub(super) async fn token_create(
    State(state): State<AppState>,
    session: UiSession,
    Form(form): Form<Typed>,
) -> Response {
    let p = &session.0.principal;
    let role: Role = match typed(&form, "role").parse() {
        Ok(r) => r,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    let org = match typed(&form, "org") {
        "" => None,
        o => match OrgId::new(o) {
            Ok(o) => Some(o),
            Err(_) => return failed(ApiError::NotFound("no such organization".into())),
        },
    };
    if let Err(e) = ops::tokens::may_create(p, role, org.as_ref()) {
        return failed(e);
    }
    let once = typed(&form, "once");
    if !state.shared.console.first_use(once) {
        return tokens_page(&state, &session, None, None, Some(sent_before(once))).await;
    }
    let new = ops::tokens::NewToken {
        name: typed(&form, "name").to_owned(),
        role,
        org,
        expires_at: None,
    };
    match ops::tokens::create(&state, p, new).await {
        Ok((token, view)) => {
            let made = Made {
                token: token.expose_secret().to_owned(),
                name: view.name,
                snippet: format!("export KEYWARD_TOKEN={}", token.expose_secret()),
            };
            tokens_page(&state, &session, None, Some(made), None).await
        }
        Err(ApiError::BadRequest(why)) => {
            tokens_page(&state, &session, None, None, Some(why)).await
        }
        Err(e) => failed(e),
    }
}

pub(super) async fn token_revoke(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    match ops::tokens::revoke(&state, &session.0.principal, &id).await {
        Ok(_) => Redirect::to("/ui/tokens?notice=revoked").into_response(),
        Err(e) => failed(e),
    }
}
