//! The Gateway Tokens page: an organization's gateway tokens, making one (shown once, with
//! the snippet to paste), revoking one.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use keyward_core::{OrgId, Provider};
use secrecy::ExposeSecret as _;

use super::form::{Made, OrgQuery, Typed, named_org, sent_before, typed};
use super::{Chrome, UiSession, failed, when};
use crate::{ApiError, AppState, ops};

struct GatewayTokenRow {
    id: String,
    name: String,
    org: String,
    prefix: String,
    providers: String,
    rpm: String,
    last_used: String,
    state: &'static str,
    live: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/gateway_tokens.html")]
struct GatewayTokensPage {
    chrome: Chrome,
    orgs: Vec<String>,
    org: String,
    rows: Vec<GatewayTokenRow>,
    made: Option<Made>,
    error: Option<String>,
    /// This form's one-time id.
    once: String,
}

async fn gateway_tokens_page(
    state: &AppState,
    session: &UiSession,
    org: Option<OrgId>,
    notice: Option<&str>,
    made: Option<Made>,
    error: Option<String>,
) -> Response {
    let (list, orgs) = match tokio::try_join!(
        ops::tokens::list_gateway(state, &session.0.principal, org.as_ref()),
        super::visible_orgs(state, session)
    ) {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let rows = list
        .into_iter()
        .map(|t| {
            let state = t.state.as_str();
            GatewayTokenRow {
                id: t.id,
                name: t.name,
                org: t.org.to_string(),
                prefix: t.prefix,
                providers: if t.providers.is_empty() {
                    "all".to_owned()
                } else {
                    t.providers.join(", ")
                },
                rpm: t
                    .rpm
                    .map_or_else(|| "no limit".to_owned(), |r| r.to_string()),
                last_used: when(t.last_used_at),
                live: state == "active",
                state,
            }
        })
        .collect();
    GatewayTokensPage {
        chrome: Chrome::new(&session.0, "gateway-tokens", notice),
        orgs,
        org: org.map(|o| o.to_string()).unwrap_or_default(),
        rows,
        made,
        error,
        once: super::state::form_id(),
    }
    .into_response()
}

pub(super) async fn gateway_tokens(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OrgQuery>,
) -> Response {
    let org = match named_org(q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    gateway_tokens_page(&state, &session, org, q.notice.as_deref(), None, None).await
}

/// The base URL clients of this server use, from the request's own `Host`.
fn origin(headers: &axum::http::HeaderMap, secure: bool) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("127.0.0.1:8080");
    format!("{}://{host}", if secure { "https" } else { "http" })
}

pub(super) async fn gateway_token_create(
    State(state): State<AppState>,
    session: UiSession,
    headers: axum::http::HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let providers_asked: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "provider")
        .map(|(_, v)| v.clone())
        .collect();
    let form: Typed = form.into_iter().collect();
    let p = &session.0.principal;
    let org = match OrgId::new(typed(&form, "org")) {
        Ok(o) => o,
        Err(_) => return failed(ApiError::NotFound("no such organization".into())),
    };
    if let Err(e) = ops::tokens::may_create_gateway(p, &org) {
        return failed(e);
    }
    let once = typed(&form, "once");
    if !state.shared.console.first_use(once) {
        let why = sent_before(once);
        return gateway_tokens_page(&state, &session, Some(org), None, None, Some(why)).await;
    }
    let mut providers = Vec::new();
    for p in providers_asked.iter().filter(|p| !p.is_empty()) {
        match Provider::get(p) {
            Ok(p) => providers.push(p),
            Err(e) => {
                let why = format!("{e}");
                return gateway_tokens_page(&state, &session, Some(org), None, None, Some(why))
                    .await;
            }
        }
    }
    let rpm = match typed(&form, "rpm") {
        "" => None,
        r => match r.parse() {
            Ok(r) => Some(r),
            Err(_) => {
                return gateway_tokens_page(
                    &state,
                    &session,
                    Some(org),
                    None,
                    None,
                    Some("Requests per minute must be a whole number.".into()),
                )
                .await;
            }
        },
    };
    let new = ops::tokens::NewGatewayToken {
        org: org.clone(),
        name: typed(&form, "name").to_owned(),
        providers,
        rpm,
        expires_at: None,
    };
    match ops::tokens::create_gateway(&state, p, new).await {
        Ok((token, view)) => {
            let base = origin(&headers, state.shared.secure_cookies);
            let made = Made {
                token: token.expose_secret().to_owned(),
                name: view.name,
                snippet: format!(
                    "from openai import OpenAI\n\nclient = OpenAI(\n    base_url=\"{base}/gateway/openai/v1\",\n    api_key=\"{}\",\n)\n",
                    token.expose_secret()
                ),
            };
            gateway_tokens_page(&state, &session, Some(org), None, Some(made), None).await
        }
        Err(ApiError::BadRequest(why)) => {
            gateway_tokens_page(&state, &session, Some(org), None, None, Some(why)).await
        }
        Err(e) => failed(e),
    }
}

pub(super) async fn gateway_token_revoke(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    match ops::tokens::revoke_gateway(&state, &session.0.principal, &id).await {
        Ok(token) => Redirect::to(&format!(
            "/ui/gateway-tokens?org={}&notice=revoked_gateway",
            token.org
        ))
        .into_response(),
        Err(e) => failed(e),
    }
}
