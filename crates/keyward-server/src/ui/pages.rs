//! The rest of the console: organizations, config variables, gateway and API tokens, usage,
//! the audit log, master keys and the gateway's static targets. The same `Vault` calls and role
//! rules as the API; what a page may not show is "not found" or "not allowed", as there.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keyward_core::audit::EventFilter;
use keyward_core::resolve::Strategy;
use keyward_core::{Millis, OrgId, Provider, VarName};
use keyward_store::{HOUR_MS, Role, UsageSubject};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::chart::{Chart, chart};
use super::credentials::{EventRow, Names};
use super::{Chrome, UiSession, failed, when};
use crate::auth::Caller;
use crate::{ApiError, AppState, LoadTrigger};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/orgs", get(orgs).post(org_create))
        .route("/ui/orgs/{org}/strategy", post(org_strategy))
        .route("/ui/variables", get(variables))
        .route("/ui/variables/reveal", post(variable_reveal))
        .route(
            "/ui/gateway-tokens",
            get(gateway_tokens).post(gateway_token_create),
        )
        .route("/ui/gateway-tokens/{id}/revoke", post(gateway_token_revoke))
        .route("/ui/tokens", get(tokens).post(token_create))
        .route("/ui/tokens/{id}/revoke", post(token_revoke))
        .route("/ui/usage", get(usage))
        .route("/ui/events", get(events))
        .route("/ui/events/verify", post(events_verify))
        .route("/ui/master-key", get(master_key))
        .route("/ui/master-key/rotate", post(master_key_rotate))
        .route("/ui/gateway", get(gateway))
        .route("/ui/gateway/reload", post(gateway_reload))
}

fn caller(session: &UiSession) -> Caller {
    Caller(session.0.principal.clone())
}

/// The organization a page is about: the session's own, or for an admin the one asked for (or
/// none: all). Another organization is "not found".
fn scope(session: &UiSession, asked: Option<&str>) -> Result<Option<OrgId>, ApiError> {
    let p = &session.0.principal;
    let asked = asked.filter(|o| !o.is_empty());
    let not_found = || ApiError::NotFound("no such organization".into());
    match (&p.org, asked) {
        (Some(own), Some(o)) if o != own.as_str() => Err(not_found()),
        (Some(own), _) => Ok(Some(own.clone())),
        (None, Some(o)) => OrgId::new(o).map(Some).map_err(|_| not_found()),
        (None, None) => Ok(None),
    }
}

/// The API's rule for a listing: one organization with one of `roles`, or all of them for an
/// admin.
fn require_scope(c: &Caller, org: Option<&OrgId>, roles: &[Role]) -> Result<(), ApiError> {
    match org {
        Some(o) => c.require(o, roles),
        None => c.require_admin(),
    }
}

/// Every form of these pages, by input name.
type Typed = BTreeMap<String, String>;

fn typed<'a>(form: &'a Typed, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

// ----- organizations ----------------------------------------------------------------------

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

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn orgs_page(
    state: &AppState,
    session: &UiSession,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let all = match state.vault.list_orgs().await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let rows = all
        .into_iter()
        .filter(|o| session.0.principal.sees(&o.id))
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

async fn orgs(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NoticeQuery>,
) -> Response {
    orgs_page(&state, &session, q.notice.as_deref(), None).await
}

async fn org_create(
    State(state): State<AppState>,
    session: UiSession,
    Form(form): Form<Typed>,
) -> Response {
    let caller = caller(&session);
    if let Err(e) = caller.require_admin() {
        return failed(e);
    }
    let made = match OrgId::new(typed(&form, "id")) {
        Ok(id) => {
            let name = Some(typed(&form, "name")).filter(|n| !n.is_empty());
            state
                .vault
                .create_org(&id, name, &caller.actor())
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match made {
        Ok(_) => Redirect::to("/ui/orgs?notice=org_created").into_response(),
        Err(why) => orgs_page(&state, &session, None, Some(why)).await,
    }
}

async fn org_strategy(
    State(state): State<AppState>,
    session: UiSession,
    Path(org): Path<String>,
    Form(form): Form<Typed>,
) -> Response {
    let caller = caller(&session);
    let Ok(org) = OrgId::new(&org) else {
        return failed(ApiError::NotFound("no such organization".into()));
    };
    if let Err(e) = caller.require(&org, &[Role::OrgAdmin]) {
        return failed(e);
    }
    let strategy: Strategy = match typed(&form, "strategy").parse() {
        Ok(s) => s,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    match state
        .vault
        .set_org_strategy(&org, strategy, &caller.actor())
        .await
    {
        Ok(_) => Redirect::to("/ui/orgs?notice=strategy").into_response(),
        Err(e) => failed(e),
    }
}

// ----- config variables -------------------------------------------------------------------

struct VarRow {
    name: String,
    org: String,
    value: String,
    sensitive: bool,
    description: String,
    updated: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/variables.html")]
struct VariablesPage {
    chrome: Chrome,
    org: String,
    rows: Vec<VarRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/revealed.html")]
struct RevealedPage {
    chrome: Chrome,
    name: String,
    org: String,
    value: String,
}

#[derive(Deserialize)]
struct OrgQuery {
    org: Option<String>,
    notice: Option<String>,
}

async fn variables(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OrgQuery>,
) -> Response {
    let org = match scope(&session, q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    if let Some(o) = &org
        && let Err(e) = caller(&session).require(o, &[Role::OrgAdmin, Role::Viewer])
    {
        return failed(e);
    }
    let vars = match state.vault.list_vars(org.as_ref()).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let rows = vars
        .into_iter()
        .map(|v| VarRow {
            value: v.shown_value().to_owned(),
            name: v.name.to_string(),
            org: v
                .org
                .as_ref()
                .map_or_else(|| "(global)".to_owned(), ToString::to_string),
            sensitive: v.sensitive,
            description: v.description,
            updated: when(Some(v.updated_at)),
        })
        .collect();
    VariablesPage {
        chrome: Chrome::new(&session.0, "variables", q.notice.as_deref()),
        org: org.map(|o| o.to_string()).unwrap_or_default(),
        rows,
    }
    .into_response()
}

/// Shows one sensitive value, once, on a page that is not cached (every console page is
/// `no-store`). Admins only; audited as the API's reveal is.
async fn variable_reveal(
    State(state): State<AppState>,
    session: UiSession,
    Form(form): Form<Typed>,
) -> Response {
    let caller = caller(&session);
    if let Err(e) = caller.require_admin() {
        return failed(e);
    }
    let name = match VarName::new(typed(&form, "name")) {
        Ok(n) => n,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    let org = match typed(&form, "org") {
        "" | "(global)" => None,
        o => match OrgId::new(o) {
            Ok(o) => Some(o),
            Err(_) => return failed(ApiError::NotFound("no such organization".into())),
        },
    };
    match state
        .vault
        .get_var(&name, org.as_ref(), true, &caller.actor())
        .await
    {
        Ok(got) => RevealedPage {
            chrome: Chrome::new(&session.0, "variables", None),
            name: name.to_string(),
            org: org.map_or_else(|| "(global)".to_owned(), |o| o.to_string()),
            value: got
                .value
                .map(|v| v.expose_secret().to_owned())
                .or(got.view.value)
                .unwrap_or_default(),
        }
        .into_response(),
        Err(e) => failed(e),
    }
}

/// Why a shown-once form is not done twice (or, without its one-time id, not at all).
fn sent_before(once: &str) -> String {
    if once.is_empty() {
        "This form is out of date (it has no one-time id): fill in the form below.".to_owned()
    } else {
        "This form was already sent, and its token was shown then; it is not made again. Fill in the form below to make another.".to_owned()
    }
}

// ----- gateway tokens ---------------------------------------------------------------------

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

/// A token just made: shown once, with what to paste.
struct Made {
    token: String,
    name: String,
    snippet: String,
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
    let c = caller(session);
    if let Err(e) = require_scope(&c, org.as_ref(), &[Role::OrgAdmin, Role::Viewer]) {
        return failed(e);
    }
    let (list, orgs) = match tokio::try_join!(
        state.vault.list_gateway_tokens(org.as_ref()),
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

async fn gateway_tokens(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OrgQuery>,
) -> Response {
    let org = match scope(&session, q.org.as_deref()) {
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

async fn gateway_token_create(
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
    let c = caller(&session);
    let org = match OrgId::new(typed(&form, "org")) {
        Ok(o) => o,
        Err(_) => return failed(ApiError::NotFound("no such organization".into())),
    };
    if let Err(e) = c.require(&org, &[Role::OrgAdmin]) {
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
    let name = typed(&form, "name").to_owned();
    match state
        .vault
        .create_gateway_token(&org, &name, &providers, rpm, None, &c.actor())
        .await
    {
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
        Err(e) if matches!(e, keyward_store::VaultError::InvalidInput(_)) => {
            gateway_tokens_page(&state, &session, Some(org), None, None, Some(e.to_string())).await
        }
        Err(e) => failed(e),
    }
}

async fn gateway_token_revoke(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    match crate::ops::revoke_gateway_token(&state, &caller(&session), &id).await {
        Ok(token) => Redirect::to(&format!(
            "/ui/gateway-tokens?org={}&notice=revoked_gateway",
            token.org
        ))
        .into_response(),
        Err(e) => failed(e),
    }
}

// ----- API tokens -------------------------------------------------------------------------

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
    let c = caller(session);
    let own = c.0.org.clone();
    if let Err(e) = require_scope(&c, own.as_ref(), &[Role::OrgAdmin]) {
        return failed(e);
    }
    let (list, orgs) = match tokio::try_join!(
        state.vault.list_tokens(own.as_ref()),
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

async fn tokens(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NoticeQuery>,
) -> Response {
    tokens_page(&state, &session, q.notice.as_deref(), None, None).await
}

async fn token_create(
    State(state): State<AppState>,
    session: UiSession,
    Form(form): Form<Typed>,
) -> Response {
    let c = caller(&session);
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
    // The API's rule: admins make any token; an organization's admin, its own below admin.
    let allowed = match (&org, role) {
        (_, Role::Admin) | (None, _) => c.require_admin(),
        (Some(o), _) => c.require(o, &[Role::OrgAdmin]),
    };
    if let Err(e) = allowed {
        return failed(e);
    }
    let once = typed(&form, "once");
    if !state.shared.console.first_use(once) {
        return tokens_page(&state, &session, None, None, Some(sent_before(once))).await;
    }
    let name = typed(&form, "name").to_owned();
    match state
        .vault
        .create_token(&name, role, org.as_ref(), None, &c.actor())
        .await
    {
        Ok((token, view)) => {
            let made = Made {
                token: token.expose_secret().to_owned(),
                name: view.name,
                snippet: format!("export KEYWARD_TOKEN={}", token.expose_secret()),
            };
            tokens_page(&state, &session, None, Some(made), None).await
        }
        Err(keyward_store::VaultError::InvalidInput(why)) => {
            tokens_page(&state, &session, None, None, Some(why)).await
        }
        Err(e) => failed(e),
    }
}

async fn token_revoke(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
) -> Response {
    match crate::ops::revoke_token(&state, &caller(&session), &id).await {
        Ok(_) => Redirect::to("/ui/tokens?notice=revoked").into_response(),
        Err(e) => failed(e),
    }
}

// ----- usage ------------------------------------------------------------------------------

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
}

async fn usage(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<OrgQuery>,
) -> Response {
    let asked = match scope(&session, q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let orgs = match super::visible_orgs(&state, &session).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    // One organization, or for an admin who picks none, all of them.
    let shown: Vec<OrgId> = match &asked {
        Some(o) => vec![o.clone()],
        None => orgs.iter().filter_map(|o| OrgId::new(o).ok()).collect(),
    };
    for org in &shown {
        if let Err(e) = caller(&session).require(org, &[Role::OrgAdmin, Role::Viewer]) {
            return failed(e);
        }
    }
    let mut all = Vec::new();
    for org in &shown {
        match state.vault.usage(org).await {
            Ok(u) => all.extend(u.into_iter().map(|u| (org.clone(), u))),
            Err(e) => return failed(e),
        }
    }
    let now = Millis::now();
    let mut rows = Vec::new();
    for (org, u) in all {
        let buckets = match state
            .vault
            .usage_hourly(&org, u.subject, &u.id, Millis(now.0 - 7 * 24 * HOUR_MS))
            .await
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
    UsagePage {
        chrome: Chrome::new(&session.0, "usage", q.notice.as_deref()),
        orgs,
        org: asked.map(|o| o.to_string()).unwrap_or_default(),
        rows,
    }
    .into_response()
}

// ----- the audit log ----------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct EventsQuery {
    category: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    outcome: Option<String>,
    org: Option<String>,
    /// Only events of the last so many hours.
    hours: Option<i64>,
    /// A cursor: events before this sequence number.
    before: Option<i64>,
    /// An outcome code (after verifying).
    notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/events.html")]
struct EventsPage {
    chrome: Chrome,
    events: Vec<EventRow>,
    category: String,
    action: String,
    actor: String,
    outcome: String,
    org: String,
    hours: String,
    next: Option<String>,
    /// `Some(true)`: the chain was just verified; `Some(false)`: it does not verify; `None`:
    /// not verified on this request (or not an admin).
    verified: Option<bool>,
    /// The listing read back its budget of events and found none: say so, next to the link
    /// that goes on.
    scanned_only: bool,
    verify_words: String,
}

/// Events per page of the audit log.
const EVENTS_PAGE: i64 = 50;

async fn events(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<EventsQuery>,
) -> Response {
    let org = match scope(&session, q.org.as_deref()) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    if let Some(o) = &org
        && let Err(e) = caller(&session).require(o, &[Role::OrgAdmin, Role::Viewer])
    {
        return failed(e);
    }
    let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
    let mut spec = Vec::new();
    for (key, value) in [
        ("category", text(&q.category)),
        ("action", text(&q.action)),
        ("actor", text(&q.actor)),
        ("outcome", text(&q.outcome)),
    ] {
        if !value.is_empty() {
            spec.push(format!("{key}={value}"));
        }
    }
    let mut filter: EventFilter = match spec.join(",").parse() {
        Ok(f) => f,
        Err(e) => return failed(ApiError::BadRequest(e.to_string())),
    };
    filter.org = org.as_ref().map(ToString::to_string);
    filter.before = q.before;
    filter.since = q
        .hours
        .filter(|h| *h > 0)
        .map(|h| Millis(Millis::now().0 - h.saturating_mul(HOUR_MS)));
    // The page never reads the whole log: the listing has a scan budget, and the chain is
    // verified on request, from the last verified checkpoint on.
    let page = match state.vault.list_events_page(&filter, EVENTS_PAGE).await {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let list = page.items;
    let (verified, verify_words) = if session.0.principal.role == Role::Admin {
        let checkpoint = match state.vault.verified_checkpoint().await {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        match (q.notice.as_deref(), checkpoint) {
            (Some("chain_broken"), _) => (
                Some(false),
                "The audit chain does NOT verify past the last checkpoint: run `keyward events verify` on the server for the event and why.".to_owned(),
            ),
            (_, Some((seq, at))) => (
                q.notice.as_deref().map(|n| n == "chain_ok"),
                format!(
                    "The audit chain was verified up to event #{seq} at {}.",
                    crate::ui::when(Some(at))
                ),
            ),
            (_, None) => (
                None,
                "The audit chain has not been verified from the console yet.".to_owned(),
            ),
        }
    } else {
        (
            None,
            "Verifying the chain needs an admin (keyward events verify).".to_owned(),
        )
    };
    let names = match Names::load(&state, &session).await {
        Ok(n) => n,
        Err(e) => return failed(e),
    };
    let scanned_only = list.is_empty() && page.next.is_some();
    let next = page.next.map(|before| {
        let mut url = url_query(&[
            ("category", text(&q.category)),
            ("action", text(&q.action)),
            ("actor", text(&q.actor)),
            ("outcome", text(&q.outcome)),
            (
                "org",
                org.as_ref().map(ToString::to_string).unwrap_or_default(),
            ),
            ("hours", q.hours.map(|h| h.to_string()).unwrap_or_default()),
        ]);
        url.push_str(&format!("&before={before}"));
        format!("/ui/events?{url}")
    });
    EventsPage {
        chrome: Chrome::new(&session.0, "events", q.notice.as_deref()),
        events: list.into_iter().map(|e| EventRow::new(e, &names)).collect(),
        category: text(&q.category),
        action: text(&q.action),
        actor: text(&q.actor),
        outcome: text(&q.outcome),
        org: org.map(|o| o.to_string()).unwrap_or_default(),
        hours: q.hours.map(|h| h.to_string()).unwrap_or_default(),
        next,
        scanned_only,
        verified,
        verify_words,
    }
    .into_response()
}

/// Events one press of "Verify new events" checks at most (about 15 us each): a log that grew
/// by more is verified over several presses, each a few seconds at most.
const VERIFY_PER_REQUEST: i64 = 200_000;

/// `POST /ui/events/verify` (admins): verifies the events appended since the last verified
/// checkpoint, and moves the checkpoint.
async fn events_verify(State(state): State<AppState>, session: UiSession) -> Response {
    if session.0.principal.role != Role::Admin {
        return failed(ApiError::Forbidden(
            "verifying the audit chain needs an admin".into(),
        ));
    }
    match state.vault.verify_new_events(VERIFY_PER_REQUEST).await {
        Ok(report) if report.ok() => Redirect::to("/ui/events?notice=chain_ok").into_response(),
        Ok(report) => {
            if let Some((seq, why)) = &report.problem {
                tracing::error!(seq, problem = %why, "the audit chain does not verify");
            }
            Redirect::to("/ui/events?notice=chain_broken").into_response()
        }
        Err(e) => failed(e),
    }
}

fn url_query(pairs: &[(&str, String)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

// ----- master keys ------------------------------------------------------------------------

struct KidRow {
    kid: String,
    primary: bool,
    configured: bool,
    credentials: u64,
    variables: u64,
    vault_keys: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "ui/master_key.html")]
struct MasterKeyPage {
    chrome: Chrome,
    primary: String,
    rows: Vec<KidRow>,
    pending: u64,
    warnings: Vec<String>,
    /// The console's last rotation: running (with progress) or its outcome.
    running: Option<String>,
    result: Option<Result<String, String>>,
}

async fn master_key(State(state): State<AppState>, session: UiSession) -> Response {
    if let Err(e) = caller(&session).require_admin() {
        return failed(e);
    }
    let rotation = state.shared.console.rotation();
    let status = match state.vault.key_status().await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    MasterKeyPage {
        chrome: Chrome::new(&session.0, "master-key", None),
        running: rotation.as_ref().filter(|r| r.finished.is_none()).map(|r| {
            format!(
                "Rotation started {} by {}: {} of {} rows rewrapped.",
                when(Some(r.started_at)),
                r.by,
                r.done,
                r.total
            )
        }),
        result: rotation.and_then(|r| r.finished),
        primary: status.primary.clone(),
        pending: status.pending_rotation(),
        warnings: status.warnings(),
        rows: status
            .kids
            .iter()
            .map(|k| KidRow {
                kid: k.kid.clone(),
                primary: k.primary,
                configured: k.configured,
                credentials: k.credentials,
                variables: k.variables,
                vault_keys: k.vault_keys,
            })
            .collect(),
    }
    .into_response()
}

/// Starts a rotation in the background (it may take a while on a large store) and shows its
/// progress on the Master Key page, which refreshes itself while it runs.
async fn master_key_rotate(State(state): State<AppState>, session: UiSession) -> Response {
    let c = caller(&session);
    if let Err(e) = c.require_admin() {
        return failed(e);
    }
    let Some(run) = state
        .shared
        .console
        .start_rotation(&session.0.principal.name)
    else {
        return Redirect::to("/ui/master-key").into_response();
    };
    let actor = c.actor();
    let vault = state.vault.clone();
    tokio::spawn(async move {
        let progress = run.clone();
        let outcome = vault
            .rotate_master_key(1000, &actor, move |p| {
                let mut r = progress.lock().unwrap_or_else(|p| p.into_inner());
                r.done = p.done;
                r.total = p.total;
            })
            .await;
        let mut r = run.lock().unwrap_or_else(|p| p.into_inner());
        r.finished = Some(match outcome {
            Ok(report) => Ok(format!(
                "Rotation to {} done: {} rewrapped, {} retried, {} failed, {} remaining.",
                report.primary, report.rewrapped, report.retried, report.failed, report.remaining
            )),
            Err(e) => {
                tracing::warn!(error = %e, "console master-key rotation stopped");
                Err(format!(
                    "Rotation stopped: {e}. Start it again: it goes on where it stopped."
                ))
            }
        });
    });
    Redirect::to("/ui/master-key").into_response()
}

// ----- the gateway ------------------------------------------------------------------------

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
}

async fn gateway_page(state: &AppState, session: &UiSession, notice: Option<&str>) -> Response {
    if let Err(e) = caller(session).require_admin() {
        return failed(e);
    }
    let (loaded, last, serving) = state.shared.gateway.targets_status();
    GatewayPage {
        chrome: Chrome::new(&session.0, "gateway", notice),
        targets: loaded
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
        ignored: loaded.ignored,
        last_load: last.as_ref().map_or_else(
            || "never (no --gateway-config)".to_owned(),
            |l| format!("{} by {}", when(Some(l.at)), l.by.as_str()),
        ),
        last_error: last.and_then(|l| l.error),
        serving_since: serving.map_or_else(|| "-".to_owned(), |l| when(Some(l.at))),
    }
    .into_response()
}

async fn gateway(
    State(state): State<AppState>,
    session: UiSession,
    Query(q): Query<NoticeQuery>,
) -> Response {
    gateway_page(&state, &session, q.notice.as_deref()).await
}

async fn gateway_reload(State(state): State<AppState>, session: UiSession) -> Response {
    let c = caller(&session);
    if let Err(e) = c.require_admin() {
        return failed(e);
    }
    // A failed reload keeps the targets in use; the page shows why, from the last load.
    let notice = match state
        .reload_gateway_targets(LoadTrigger::Console, &c.actor())
        .await
    {
        Ok(_) => "reloaded",
        Err(_) => "reload_failed",
    };
    Redirect::to(&format!("/ui/gateway?notice={notice}")).into_response()
}
