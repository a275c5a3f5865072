//! The web console at `/ui/`: server-rendered pages (askama templates, checked at compile
//! time), plain HTML forms, no script needed. Signing in exchanges an API token, once, for a
//! server-side session (`Vault::create_ui_session`); the browser holds only the session's
//! random id, in an `HttpOnly`, `SameSite=Strict` cookie on `/ui`. No key is ever sent to a
//! browser: credentials show their hint. Every answer carries a strict Content-Security-Policy
//! and `no-store`; every POST must come from this origin.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use keyward_core::Millis;
use keyward_store::{Session, VaultError};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use crate::AppState;
use crate::access::{On, Op};

mod chart;
mod credentials;
mod event_rows;
mod events;
mod form;
mod gateway;
mod gateway_tokens;
mod master_key;
mod orgs;
mod sessions;
mod spend;
mod sso;
mod state;
mod tokens;
mod usage;
mod variables;

pub(crate) use state::ConsoleState;

/// The session cookie's name.
const COOKIE: &str = "kw_session";

/// The cookie of a new session: `HttpOnly`, `SameSite=Strict`, on `/ui`, `Secure` over TLS.
fn session_cookie(state: &AppState, id: &secrecy::SecretString) -> Cookie<'static> {
    Cookie::build((COOKIE, id.expose_secret().to_owned()))
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.shared.secure_cookies)
        .build()
}

/// The console's routes, under `/ui`.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/credentials") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/credentials") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/sso/login", get(sso::start))
        .route("/ui/sso/callback", get(sso::callback))
        .merge(credentials::router())
        .merge(screens())
        .route("/ui/static/app.css", get(stylesheet))
        .route("/ui/static/app.js", get(script))
        .route("/ui/static/icon.svg", get(icon))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            with_session,
        ))
        .layer(axum::middleware::from_fn(same_origin_writes))
        .layer(axum::middleware::map_response(hardened))
}

/// Looks the session of a request up once, for its page ([`UiSession`] takes it from here),
/// and runs a person's request as them: the audit events it writes carry their issuer and
/// subject (`keyward_store::as_person`).
async fn with_session(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The stylesheet, script and icon need no session (and no lookup per file).
    if request.uri().path().starts_with("/ui/static/") {
        return next.run(request).await;
    }
    let jar = CookieJar::from_headers(request.headers());
    let Some(id) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
        return next.run(request).await;
    };
    match crate::auth::console::session(&state, &id).await {
        Ok(Some(session)) => {
            let person = session.principal.person.clone();
            request.extensions_mut().insert(Found(session));
            match person {
                Some(p) => keyward_store::as_person(p, next.run(request)).await,
                None => next.run(request).await,
            }
        }
        Ok(None) => next.run(request).await,
        Err(e) => failed(e),
    }
}

/// The session [`with_session`] found.
#[derive(Clone)]
struct Found(Session);

/// Refuses every state-changing request that does not come from the console's own pages.
async fn same_origin_writes(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !safe && !same_origin(request.headers()) {
        return cross_site();
    }
    next.run(request).await
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
    failed(crate::ApiError::Forbidden(
        "cross-site request refused: the console only takes forms from its own pages".into(),
    ))
}

/// Every screen but the credentials', one module each.
fn screens() -> Router<AppState> {
    Router::new()
        .route("/ui/orgs", get(orgs::orgs).post(orgs::org_create))
        .route("/ui/orgs/{org}/strategy", post(orgs::org_strategy))
        .route("/ui/variables", get(variables::variables))
        .route("/ui/variables/reveal", post(variables::variable_reveal))
        .route(
            "/ui/gateway-tokens",
            get(gateway_tokens::gateway_tokens).post(gateway_tokens::gateway_token_create),
        )
        .route(
            "/ui/gateway-tokens/{id}/revoke",
            post(gateway_tokens::gateway_token_revoke),
        )
        .route("/ui/tokens", get(tokens::tokens).post(tokens::token_create))
        .route("/ui/tokens/{id}/revoke", post(tokens::token_revoke))
        .route("/ui/usage", get(usage::usage))
        .route("/ui/usage/spend.csv", get(spend::csv))
        .route("/ui/events", get(events::events))
        .route("/ui/events/verify", post(events::events_verify))
        .route("/ui/master-key", get(master_key::master_key))
        .route("/ui/master-key/rotate", post(master_key::master_key_rotate))
        .route("/ui/sessions", get(sessions::sessions))
        .route("/ui/sessions/{id}/end", post(sessions::session_end))
        .route("/ui/gateway", get(gateway::gateway))
        .route("/ui/gateway/reload", post(gateway::gateway_reload))
}

/// The signed-in user of a page; pages without one send the browser to the sign-in page.
pub(crate) struct UiSession(pub(crate) Session);

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(Found(session)) = parts.extensions.remove::<Found>() {
            return Ok(UiSession(session));
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(id) = jar.get(COOKIE).map(|c| c.value().to_owned()) else {
            return Err(Redirect::to("/ui/login").into_response());
        };
        match crate::auth::console::session(state, &id).await {
            Ok(Some(session)) => Ok(UiSession(session)),
            Ok(None) => Err(Redirect::to("/ui/login").into_response()),
            Err(e) => Err(failed(e)),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/login.html")]
struct LoginPage {
    error: Option<String>,
    /// The single sign-on button's words, when configured.
    sso: Option<String>,
    /// Whether the button asks the provider to sign in again (after a refusal).
    sso_again: bool,
    /// Whether the token form is offered.
    token_sign_in: bool,
}

impl LoginPage {
    fn of(state: &AppState, error: Option<String>) -> Self {
        LoginPage {
            error,
            sso: state.sso().map(|s| s.display_name().to_owned()),
            sso_again: false,
            token_sign_in: state.token_sign_in(),
        }
    }
}

async fn login_page(State(state): State<AppState>) -> LoginPage {
    LoginPage::of(&state, None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<crate::ClientAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = addr.0.ip();
    if !state.token_sign_in() {
        return (
            StatusCode::FORBIDDEN,
            LoginPage::of(
                &state,
                Some("Token sign-in is switched off on this server; use single sign-on.".into()),
            ),
        )
            .into_response();
    }
    let limits = state.shared.ui_sessions;
    let (made, over_limit) = state
        .shared
        .limiter
        .screened(
            Some(ip),
            crate::auth::console::sign_in(&state, form.token.trim(), limits, &ip.to_string()),
            |made| !matches!(made, Ok(Some(_))),
        )
        .await;
    let refused = |status: StatusCode, why: &str| {
        (status, LoginPage::of(&state, Some(why.to_owned()))).into_response()
    };
    match made {
        Ok(Some((id, _))) => {
            let cookie = session_cookie(&state, &id);
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
        Err(e) => failed(e),
    }
}

async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    found: Option<axum::Extension<Found>>,
) -> Response {
    // The session `with_session` found for this request: whether a person signs out.
    let person = found.is_some_and(|f| f.0.0.principal.person.is_some());
    if let Some(id) = jar.get(COOKIE).map(|c| c.value().to_owned())
        && let Err(e) = crate::auth::console::sign_out(&state, &id).await
    {
        return failed(e);
    }
    let gone = Cookie::build((COOKIE, "")).path("/ui").build();
    let jar = jar.remove(gone);
    // A person signs out at the provider too, where it offers that (RP-initiated logout). A
    // page that moves on, not a redirect: the console's forms may only go to itself.
    if person
        && let Some(sso) = state.sso()
        && let Some(url) = sso.logout_url().await
    {
        return (
            jar,
            sso::MovingOn {
                title: "Signed out",
                said: "Signed out of Keyward. Taking you to your identity provider to sign out there too.",
                to: url,
            },
        )
            .into_response();
    }
    (jar, Redirect::to("/ui/login")).into_response()
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("app.css"),
    )
}

async fn icon() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("icon.svg"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("app.js"),
    )
}

/// What every signed-in page shows around its content: who is signed in, what they may do,
/// where they are, and the outcome of the last action.
pub(crate) struct Chrome {
    pub(crate) who: String,
    /// Whether this is an admin (every organization, tokens, keys, the gateway).
    pub(crate) admin: bool,
    /// Whether any writes are offered at all (not to viewers).
    pub(crate) writer: bool,
    /// The sidebar entry of this page.
    pub(crate) section: &'static str,
    /// The outcome of the action that led here.
    pub(crate) notice: Option<&'static str>,
}

impl Chrome {
    pub(crate) fn new(session: &Session, section: &'static str, notice: Option<&str>) -> Self {
        let p = &session.principal;
        Self {
            who: match &p.person {
                Some(_) => format!("{} ({}, sso)", p.name, p.describe()),
                None => format!("{} ({})", p.name, p.describe()),
            },
            admin: crate::ops::may(p, Op::CreateOrg, On::Unowned),
            writer: crate::ops::credentials::may_add(p),
            section,
            notice: notice.and_then(notice_text),
        }
    }
}

/// The fixed sentence of an outcome code in a redirect's query (a code, never free text, so
/// that a link cannot put words on a page).
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => {
            "Credential created. The API key is encrypted and will never be displayed again."
        }
        "updated" => "Credential updated.",
        "activated" => "Credential activated: resolution and the gateway may use it again.",
        "deactivated" => "Credential deactivated: nothing is served with it until it is activated.",
        "deleted" => "Credential deleted.",
        "tested" => "Key tested against the provider; the result is below.",
        "org_created" => "Organization created.",
        "strategy" => "Strategy changed.",
        "revoked" => "Token revoked: it stops working at once.",
        "reloaded" => "Gateway targets reloaded.",
        "chain_ok" => "The audit chain verifies, up to the newest event.",
        "chain_broken" => "The audit chain does NOT verify.",
        "revoked_gateway" => "Gateway token revoked: it stops working at once.",
        "session_ended" => "Session ended: it is signed out everywhere.",
        "reload_failed" => {
            "The targets file did not load; the previous targets stay in use (why is below)."
        }
        _ => return None,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    status: u16,
    title: &'static str,
    message: String,
}

/// A failed console request as a page: the API's status and its (already safe) words.
pub(crate) fn failed(e: impl Into<crate::ApiError>) -> Response {
    use crate::ApiError as E;
    let e = e.into();
    let (status, title, message) = match e {
        E::BadRequest(_) | E::KeyFormat(_) | E::UnknownProvider(_) => {
            (StatusCode::BAD_REQUEST, "Not accepted", e.words())
        }
        E::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
        E::NotFound(m) | E::NoCredential(m) => (StatusCode::NOT_FOUND, "Not found", m),
        E::Upstream(m) => (
            StatusCode::FAILED_DEPENDENCY,
            "The provider did not answer",
            m,
        ),
        E::Conflict(m) | E::AlreadyExists(m) | E::Stale(m) => (StatusCode::CONFLICT, "Conflict", m),
        E::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "Not accepted", m),
        E::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m),
        E::OutcomeUnknown { detail, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", detail)
        }
        E::TooManyRequests(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "wait a minute and try again".to_owned(),
        ),
        E::Busy(m) => (StatusCode::TOO_MANY_REQUESTS, "Busy", m),
        E::Unauthorized => return Redirect::to("/ui/login").into_response(),
        E::PayloadTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            "that form is larger than any this console takes".to_owned(),
        ),
        E::Internal(m) => {
            tracing::error!(error = %m, "console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "the details are in the server's log".to_owned(),
            )
        }
    };
    (
        status,
        ErrorPage {
            status: status.as_u16(),
            title,
            message,
        },
    )
        .into_response()
}

/// The organizations `session` may pick from: all of them for an admin, else its own.
pub(crate) async fn visible_orgs(
    state: &AppState,
    session: &UiSession,
) -> Result<Vec<String>, crate::ApiError> {
    crate::ops::orgs::ids(state, &session.0.principal).await
}

/// A time for a table: how long ago, or "never" (the exact time is in [`when`]).
pub(crate) fn ago(t: Option<Millis>, now: Millis) -> String {
    let Some(t) = t else {
        return "never".to_owned();
    };
    let s = (now.0 - t.0).max(0) / 1000;
    match s {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h ago", s / 3_600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A time for people: RFC 3339 to the second, or "never".
pub(crate) fn when(t: Option<Millis>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| humantime::format_rfc3339_seconds(t.to_system_time()).to_string(),
    )
}
