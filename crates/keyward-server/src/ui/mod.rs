//! The web console at `/ui/`: server-rendered pages (askama templates, checked at compile
//! time), plain HTML forms, no script needed. Signing in exchanges an API token, once, for a
//! server-side session (`Vault::create_ui_session`); the browser holds only the session's
//! random id, in an `HttpOnly`, `SameSite=Strict` cookie on `/ui`. No key is ever sent to a
//! browser: credentials show their hint. Every answer carries a strict Content-Security-Policy
//! and `no-store`; every POST must come from this origin.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use keyward_core::credential::CredentialStatus;
use keyward_core::{Millis, OrgId, PROVIDERS, Provider};
use keyward_store::{Role, Session, VaultError};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use crate::AppState;

/// The session cookie's name.
const COOKIE: &str = "kw_session";

/// The console's routes, under `/ui`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/credentials") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/credentials") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/credentials", get(credentials))
        .route("/ui/static/app.css", get(stylesheet))
        .layer(axum::middleware::map_response(hardened))
}

/// Every answer of the console: no framing, no script but our own, nothing cached, no referrer.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether a state-changing request comes from this origin: `Sec-Fetch-Site` when the browser
/// sends it, else `Origin` against `Host`. A request with neither comes from no browser, so
/// carries no session cookie a page could have made it send.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn cross_site() -> Response {
    (
        StatusCode::FORBIDDEN,
        "cross-site request refused: the console only takes forms from its own pages",
    )
        .into_response()
}

/// The signed-in user of a page; pages without one send the browser to the sign-in page.
pub(crate) struct UiSession(pub(crate) Session);

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(id) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
            return Err(Redirect::to("/ui/login").into_response());
        };
        match state.vault.ui_session(&id).await {
            Ok(Some(session)) => Ok(UiSession(session)),
            Ok(None) => Err(Redirect::to("/ui/login").into_response()),
            Err(e) => Err(page_error(&e)),
        }
    }
}

fn page_error(e: &VaultError) -> Response {
    if e.is_unavailable() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable; try again in a moment",
        )
            .into_response();
    }
    tracing::error!(error = %e, "console page failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/login.html")]
struct LoginPage {
    error: Option<String>,
}

async fn login_page() -> LoginPage {
    LoginPage { error: None }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<crate::ClientAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    let ip = addr.0.ip();
    let limits = state.shared.ui_sessions;
    let (made, over_limit) = state
        .shared
        .limiter
        .screened(
            Some(ip),
            state
                .vault
                .create_ui_session(form.token.trim(), limits, &ip.to_string()),
            |made| !matches!(made, Ok(Some(_))),
        )
        .await;
    let refused = |status: StatusCode, why: &str| {
        (
            status,
            LoginPage {
                error: Some(why.to_owned()),
            },
        )
            .into_response()
    };
    match made {
        Ok(Some((id, _))) => {
            let cookie = Cookie::build((COOKIE, id.expose_secret().to_owned()))
                .path("/ui")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(state.shared.secure_cookies)
                .build();
            (
                CookieJar::new().add(cookie),
                Redirect::to("/ui/credentials"),
            )
                .into_response()
        }
        _ if over_limit.is_some() => {
            state.shared.limiter.failed(ip);
            refused(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins from this address; wait a minute.",
            )
        }
        Ok(None) => {
            state.shared.limiter.failed(ip);
            refused(
                StatusCode::UNAUTHORIZED,
                "That token is unknown, revoked or expired.",
            )
        }
        Err(VaultError::InvalidInput(why)) => {
            state.shared.limiter.failed(ip);
            refused(StatusCode::FORBIDDEN, &why)
        }
        Err(e) => page_error(&e),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, jar: CookieJar) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    if let Some(id) = jar.get(COOKIE).map(|c| c.value().to_owned())
        && let Err(e) = state.vault.end_ui_session(&id).await
    {
        return page_error(&e);
    }
    let gone = Cookie::build((COOKIE, "")).path("/ui").build();
    (jar.remove(gone), Redirect::to("/ui/login")).into_response()
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("app.css"),
    )
}

/// One row of the credentials table.
struct CredentialRow {
    name: String,
    org: String,
    provider: String,
    key_hint: String,
    status: &'static str,
    badge: &'static str,
    priority: i64,
    last_used: String,
    last_test: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/credentials.html")]
struct CredentialsPage {
    who: String,
    all_orgs: bool,
    orgs: Vec<String>,
    /// The organization filter; empty for all.
    org: String,
    providers: Vec<(&'static str, &'static str)>,
    /// The provider filter; empty for all.
    provider: String,
    rows: Vec<CredentialRow>,
}

#[derive(Deserialize)]
struct Filters {
    org: Option<String>,
    provider: Option<String>,
}

fn when(t: Option<Millis>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| humantime::format_rfc3339_seconds(t.to_system_time()).to_string(),
    )
}

async fn credentials(
    State(state): State<AppState>,
    UiSession(session): UiSession,
    Query(filters): Query<Filters>,
) -> Response {
    let principal = &session.principal;
    let wanted_org = filters.org.filter(|o| !o.is_empty());
    let org = match (&principal.org, wanted_org) {
        (Some(own), _) => Some(own.clone()),
        (None, Some(o)) => match OrgId::new(&o) {
            Ok(o) => Some(o),
            Err(_) => return (StatusCode::NOT_FOUND, "no such organization").into_response(),
        },
        (None, None) => None,
    };
    let provider = filters
        .provider
        .filter(|p| !p.is_empty())
        .and_then(|p| Provider::get(&p).ok());
    let orgs: Vec<String> = match &principal.org {
        Some(own) => vec![own.to_string()],
        None => match state.vault.list_orgs().await {
            Ok(orgs) => orgs.into_iter().map(|o| o.id.to_string()).collect(),
            Err(e) => return page_error(&e),
        },
    };
    let creds = match state.vault.list_credentials(org.as_ref(), provider).await {
        Ok(c) => c,
        Err(e) => return page_error(&e),
    };
    let rows = creds
        .into_iter()
        .map(|c| {
            let (status, badge) = match (c.status, c.active) {
                (CredentialStatus::Undecryptable, _) => ("Undecryptable", "undecryptable"),
                (CredentialStatus::Ok, true) => ("Active", "active"),
                (CredentialStatus::Ok, false) => ("Inactive", "inactive"),
            };
            CredentialRow {
                provider: Provider::get(&c.provider)
                    .map_or_else(|_| c.provider.clone(), |p| p.display_name.to_owned()),
                name: c.name.to_string(),
                org: c.org.to_string(),
                key_hint: c.key_hint,
                status,
                badge,
                priority: c.priority,
                last_used: when(c.last_used_at),
                last_test: c.last_test_result.unwrap_or_else(|| "-".to_owned()),
            }
        })
        .collect();
    CredentialsPage {
        who: format!("{}, {}", principal.name, principal.role),
        all_orgs: principal.role == Role::Admin,
        orgs,
        org: org.map(|o| o.to_string()).unwrap_or_default(),
        providers: PROVIDERS.iter().map(|p| (p.id, p.display_name)).collect(),
        provider: provider.map(|p| p.id.to_owned()).unwrap_or_default(),
        rows,
    }
    .into_response()
}
