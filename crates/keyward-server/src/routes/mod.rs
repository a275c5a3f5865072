//! The routes: health, the "Provider Credentials" admin guide, config variables, and
//! Keyward's own `/api/v1`.

mod spend;
mod v1;
mod vars;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use keyward_core::audit::EventFilter;
use keyward_core::credential::{CredentialUpdate, CredentialView, FormatCheck, NewCredential};
use keyward_core::{CredentialName, OrgId, Provider};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{ApiJson, Caller};
use crate::ops::{audit, credentials, orgs};
use crate::{ApiError, AppState};

/// Request bodies are small: the largest legitimate one is a service-account JSON.
const BODY_LIMIT: usize = 64 * 1024;

/// The OpenAPI document's frame; every route adds its own path to it.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Keyward",
    description = "A vault and gateway for LLM provider API keys: the admin API."
))]
struct ApiDoc;

/// The router and the OpenAPI document of exactly its routes (both come from the same
/// `routes!` lists, so they cannot disagree).
pub(crate) fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(crate::metrics::render))
        // The "Provider Credentials" admin guide, path for path.
        .routes(routes!(guide_list))
        .routes(routes!(guide_create))
        .routes(routes!(guide_update, guide_delete))
        .routes(routes!(guide_activate))
        .routes(routes!(guide_deactivate))
        // Config variables.
        .routes(routes!(vars::create, vars::list))
        .routes(routes!(vars::get, vars::put, vars::delete))
        .routes(routes!(vars::v1_create, vars::v1_list))
        .routes(routes!(vars::v1_get, vars::v1_put, vars::v1_delete))
        // Keyward's own API.
        .routes(routes!(orgs_list, orgs_create))
        .routes(routes!(orgs_patch))
        .routes(routes!(v1::creds_list, v1::creds_create))
        .routes(routes!(v1::creds_get, v1::creds_patch, v1::creds_delete))
        .routes(routes!(v1::creds_activate))
        .routes(routes!(v1::creds_deactivate))
        .routes(routes!(v1::creds_test))
        .routes(routes!(v1::creds_discover))
        .routes(routes!(v1::providers))
        .routes(routes!(v1::env_status))
        .routes(routes!(v1::tokens_list, v1::tokens_create))
        .routes(routes!(v1::tokens_revoke))
        .routes(routes!(v1::gateway_tokens_list, v1::gateway_tokens_create))
        .routes(routes!(
            v1::gateway_tokens_revoke,
            v1::gateway_tokens_update
        ))
        .routes(routes!(v1::master_key_status))
        .routes(routes!(v1::master_key_rotate))
        .routes(routes!(v1::sessions_list))
        .routes(routes!(v1::sessions_end))
        .routes(routes!(v1::sso_status))
        .routes(routes!(v1::eso_secret))
        .routes(routes!(v1::gateway_reload))
        .routes(routes!(v1::gateway_status))
        .routes(routes!(v1::doctor))
        .routes(routes!(v1::usage))
        .routes(routes!(spend::spend))
        .routes(routes!(spend::prices_list))
        .routes(routes!(spend::budgets_list, spend::budgets_set))
        .routes(routes!(spend::budgets_delete))
        // A price import may be LiteLLM's whole file.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(spend::prices_import))
                .layer(DefaultBodyLimit::max(spend::PRICES_BODY_LIMIT)),
        )
        .routes(routes!(resolve))
        .routes(routes!(v1::env))
        .routes(routes!(events))
        .routes(routes!(events_verify))
        .routes(routes!(whoami))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(crate::error::as_problem))
        .split_for_parts();
    utoipa::Modify::modify(&crate::openapi::Contract, &mut doc);
    let declared = std::sync::Arc::new(declared_queries(&doc));
    let router = router.route_layer(axum::middleware::from_fn(move |req, next| {
        let declared = declared.clone();
        async move { only_declared_query(&declared, req, next).await }
    }));
    (router, doc)
}

/// The query parameters each (method, route) declares in the OpenAPI document.
type DeclaredQueries = std::collections::HashMap<(String, String), Vec<String>>;

fn declared_queries(doc: &utoipa::openapi::OpenApi) -> DeclaredQueries {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::ParameterIn;
    let mut out = DeclaredQueries::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let names = item
                .parameters
                .iter()
                .chain(op.parameters.iter())
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => {
                        Some(p.name.clone())
                    }
                    _ => None,
                })
                .collect();
            out.insert((method.to_owned(), path.clone()), names);
        }
    }
    out
}

/// Refuses a query parameter the route does not declare, on every documented route: a
/// caller that relies on one (`DELETE ...?migrate_to=x`) must not have it dropped silently,
/// least of all by an operation that cannot be undone.
async fn only_declared_query(
    declared: &DeclaredQueries,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(query) = req.uri().query().filter(|q| !q.is_empty()) else {
        return next.run(req).await;
    };
    let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() else {
        return next.run(req).await;
    };
    let Some(allowed) = declared.get(&(req.method().as_str().to_owned(), path.as_str().to_owned()))
    else {
        return next.run(req).await;
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let raw = pair.split('=').next().unwrap_or_default();
        let name = percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        if !allowed.contains(&name) {
            let takes = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return ApiError::BadRequest(format!(
                "unknown query parameter {} (this route takes: {takes}); nothing was done",
                keyward_core::secret_like::shown(&name)
            ))
            .into_response();
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "The process is up")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "The store answers and the master keys open it")))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match crate::ops::server::ready(&state).await {
        Ok(()) => match state.keys_from() {
            Some(note) => (StatusCode::OK, format!("ready\nmaster keys: {note}\n")).into_response(),
            None => (StatusCode::OK, "ready\n").into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// The caller, as `/api/v1/whoami` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct WhoAmI {
    /// The token's id (`workload:RULE:SUB` for a workload, `jwt:KID:SUB` for a signed JWT).
    token_id: String,
    /// The token's name, or the workload's subject.
    name: String,
    /// What the audit log records as the actor.
    actor: String,
    /// The role, when the caller holds one (a token always does).
    role: Option<keyward_store::Role>,
    /// Its organization (none for an admin, or for a caller of several roles).
    org: Option<OrgId>,
    /// Every role the caller holds, and where.
    grants: Vec<keyward_store::RoleGrant>,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "tokens", responses((status = 200, description = "The caller: token id, role, organization (and every grant it holds)", body = WhoAmI)))]
async fn whoami(caller: Caller) -> Json<Value> {
    let p = caller.0;
    let single = match p.grants.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    Json(json!(WhoAmI {
        actor: p.actor(),
        role: single.as_ref().map(|g| g.role),
        org: single.and_then(|g| g.org),
        token_id: p.token_id,
        name: p.name,
        grants: p.grants,
    }))
}

pub(super) fn parse_org(s: &str) -> Result<OrgId, ApiError> {
    Ok(OrgId::new(s)?)
}

// ----- the admin guide --------------------------------------------------------------------

#[utoipa::path(get, path = "/api/provider-credentials/organization/{organization_id}", tag = "provider-credentials", params(("organization_id" = String, Path, description = "an organization's slug")), responses((status = 200, description = "An organization's credentials, masked", body = Vec<CredentialView>)))]
async fn guide_list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    let org = parse_org(&org)?;
    Ok(Json(credentials::of_org(&state, &caller.0, &org).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GuideCreate {
    organization_id: String,
    provider: String,
    credential_name: String,
    api_key: Option<String>,
    api_base: Option<String>,
    /// Store a key that does not look like the provider's.
    #[serde(default)]
    skip_format_check: bool,
}

#[utoipa::path(post, path = "/api/provider-credentials/create", tag = "provider-credentials", request_body = GuideCreate, responses((status = 201, description = "The credential, created", body = CredentialView)))]
async fn guide_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<GuideCreate>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let org = parse_org(&body.organization_id)?;
    let provider = Provider::get(&body.provider)?;
    let mut new = NewCredential::new(
        org,
        provider,
        CredentialName::new(&body.credential_name)?,
        body.api_key.map(SecretString::from),
    );
    if let Some(base) = body.api_base.filter(|b| !b.is_empty()) {
        new.fields.insert("base_url".into(), base);
    }
    new.format_check = if body.skip_format_check {
        FormatCheck::Skip
    } else {
        FormatCheck::Enforce
    };
    let view = credentials::create(&state, &caller.0, new).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GuideUpdate {
    credential_name: Option<String>,
    api_key: Option<String>,
    api_base: Option<String>,
    /// Store a key that does not look like the provider's.
    #[serde(default)]
    skip_format_check: bool,
}

#[utoipa::path(put, path = "/api/provider-credentials/{credential_id}", tag = "provider-credentials", request_body = GuideUpdate, params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "Rename, rotate the key or change the base URL", body = CredentialView), (status = 422, description = "A new base URL without the key: moving a stored key takes the key again")))]
async fn guide_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GuideUpdate>,
) -> Result<Json<CredentialView>, ApiError> {
    let mut update = CredentialUpdate {
        name: body
            .credential_name
            .as_deref()
            .map(CredentialName::new)
            .transpose()?,
        secret: body.api_key.map(SecretString::from),
        format_check: body.skip_format_check.then_some(FormatCheck::Skip),
        ..CredentialUpdate::default()
    };
    if let Some(base) = body.api_base {
        update.fields.insert("base_url".into(), base);
    }
    Ok(Json(
        credentials::update(&state, &caller.0, &id, None, update).await?,
    ))
}

pub(super) async fn guide_set_active(
    state: AppState,
    caller: Caller,
    id: String,
    active: bool,
) -> Result<Json<CredentialView>, ApiError> {
    Ok(Json(
        credentials::set_active(&state, &caller.0, &id, active).await?,
    ))
}

#[utoipa::path(put, path = "/api/provider-credentials/{credential_id}/activate", tag = "provider-credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "Let resolution use a credential", body = CredentialView)))]
async fn guide_activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    guide_set_active(state, caller, id, true).await
}

#[utoipa::path(put, path = "/api/provider-credentials/{credential_id}/deactivate", tag = "provider-credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "Stop resolution from using a credential", body = CredentialView)))]
async fn guide_deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    guide_set_active(state, caller, id, false).await
}

#[utoipa::path(delete, path = "/api/provider-credentials/{credential_id}", tag = "provider-credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 204, description = "Deleted")))]
pub(super) async fn guide_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    credentials::delete(&state, &caller.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- /api/v1 ----------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/orgs", tag = "organizations", responses((status = 200, description = "The organizations the caller may see", body = Vec<keyward_store::Organization>)))]
async fn orgs_list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(orgs::list(&state, &caller.0).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OrgCreate {
    id: String,
    name: Option<String>,
    /// priority (default), round_robin or weighted.
    strategy: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/orgs", tag = "organizations", request_body = OrgCreate, responses((status = 201, description = "The organization, created (admin)", body = keyward_store::Organization)))]
async fn orgs_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OrgCreate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = orgs::NewOrg {
        strategy: body.strategy.as_deref().map(str::parse).transpose()?,
        id: parse_org(&body.id)?,
        name: body.name,
    };
    let org = orgs::create(&state, &caller.0, new).await?;
    Ok((StatusCode::CREATED, Json(json!(org))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OrgPatch {
    /// priority, round_robin or weighted.
    strategy: Option<String>,
    /// Whether the organization's resolutions fall back to the server's environment when it
    /// has no active credential: `on`, `off`, or `default` (the server's `--env-fallback`).
    /// Admins only: it hands the server's own variables to the organization.
    env_fallback: Option<EnvFallbackSetting>,
}

/// An organization's environment-fallback setting as the API takes it.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum EnvFallbackSetting {
    On,
    Off,
    Default,
}

/// Sets how the organization picks among several active keys of one provider, and (admins)
/// whether it falls back to the server's environment.
#[utoipa::path(patch, path = "/api/v1/orgs/{organization_id}", tag = "organizations", request_body = OrgPatch, params(("organization_id" = String, Path, description = "an organization's slug")), responses((status = 200, description = "The organization, changed (admin or its org_admin; env_fallback: admin)", body = keyward_store::Organization)))]
async fn orgs_patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<OrgPatch>,
) -> Result<Json<Value>, ApiError> {
    let org = parse_org(&org)?;
    let change = orgs::OrgChange {
        strategy: body.strategy.as_deref().map(str::parse).transpose()?,
        env_fallback: body.env_fallback.map(|setting| match setting {
            EnvFallbackSetting::On => Some(true),
            EnvFallbackSetting::Off => Some(false),
            EnvFallbackSetting::Default => None,
        }),
    };
    Ok(Json(json!(
        orgs::change(&state, &caller.0, &org, change).await?
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    organization_id: String,
    /// A provider id, or Open Notebook's name for it (`google`, `azure`).
    provider: String,
    credential_name: Option<String>,
    /// Only a credential usable for this (`chat`, `embeddings`, ...; Open Notebook's
    /// `language`, `embedding`, ... too).
    modality: Option<String>,
}

/// The provider config object: the key and the fields a client needs.
#[utoipa::path(post, path = "/api/v1/resolve", tag = "resolution", request_body = ResolveBody, responses((status = 200, description = "The provider config object, with the key (audited)", body = crate::openapi::ConfigObject)))]
async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    let org = parse_org(&body.organization_id)?;
    let resolved = crate::ops::resolve::one(
        &state,
        &caller.0,
        &org,
        &body.provider,
        body.credential_name.as_deref(),
        body.modality.as_deref(),
    )
    .await?;
    Ok(Json(crate::ops::resolve::answer(&state, &resolved)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    filter: Option<String>,
    limit: Option<i64>,
    /// A cursor: only events before this sequence number (`next_cursor` of the last page).
    before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "audit", params(("filter" = Option<String>, Query, description = "category=...,org=...,action=...,outcome=...,actor=...,target=..."), ("limit" = Option<i64>, Query, description = "at most this many (default 50)"), ("before" = Option<i64>, Query, description = "a cursor: events before this sequence number (`next_cursor` of the last page)")), responses((status = 200, description = "Audit events, newest first; a filter other than org and target reads back at most 10 000 events per call, so a page may hold fewer than `limit` (even none) with a `next_cursor` to continue", body = crate::openapi::EventPage), (status = 429, description = "Too many audit-log reads of this organization at once; retry after the Retry-After seconds")))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut filter: EventFilter = q.filter.as_deref().unwrap_or("").parse()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    filter.before = q.before;
    let page = audit::events(&state, &caller.0, filter, limit).await?;
    Ok(Json(
        json!({ "items": page.items, "next_cursor": page.next }),
    ))
}

#[utoipa::path(post, path = "/api/v1/events/verify", tag = "audit", responses((status = 200, description = "Check the HMAC chain (admin)", body = keyward_store::VerifyReport)))]
async fn events_verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(audit::verify(&state, &caller.0).await?)))
}
