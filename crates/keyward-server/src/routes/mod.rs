//! The routes: health, the "Provider Credentials" admin guide, config variables, and
//! Keyward's own `/api/v1`.

mod v1;
mod vars;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use keyward_core::audit::EventFilter;
use keyward_core::credential::{CredentialUpdate, CredentialView, FormatCheck, NewCredential};
use keyward_core::resolve::ResolveRequest;
use keyward_core::{CredentialId, CredentialName, OrgId, Provider};
use keyward_store::Role;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{ApiJson, Caller};
use crate::{ApiError, AppState};

/// Request bodies are small: the largest legitimate one is a service-account JSON.
const BODY_LIMIT: usize = 64 * 1024;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // The "Provider Credentials" admin guide, path for path.
        .route(
            "/api/provider-credentials/organization/{organization_id}",
            get(guide_list),
        )
        .route("/api/provider-credentials/create", post(guide_create))
        .route(
            "/api/provider-credentials/{credential_id}",
            put(guide_update).delete(guide_delete),
        )
        .route(
            "/api/provider-credentials/{credential_id}/activate",
            put(guide_activate),
        )
        .route(
            "/api/provider-credentials/{credential_id}/deactivate",
            put(guide_deactivate),
        )
        // Config variables.
        .route("/v1/config-variables", post(vars::create).get(vars::list))
        .route(
            "/v1/config-variables/{name}",
            get(vars::get).put(vars::put).delete(vars::delete),
        )
        // Keyward's own API.
        .route("/api/v1/orgs", get(orgs_list).post(orgs_create))
        .route(
            "/api/v1/credentials",
            get(v1::creds_list).post(v1::creds_create),
        )
        .route(
            "/api/v1/credentials/{credential_id}",
            get(v1::creds_get)
                .patch(v1::creds_patch)
                .delete(guide_delete),
        )
        .route(
            "/api/v1/credentials/{credential_id}/activate",
            post(guide_activate),
        )
        .route(
            "/api/v1/credentials/{credential_id}/deactivate",
            post(guide_deactivate),
        )
        .route(
            "/api/v1/tokens",
            get(v1::tokens_list).post(v1::tokens_create),
        )
        .route(
            "/api/v1/tokens/{token_id}",
            axum::routing::delete(v1::tokens_revoke),
        )
        .route("/api/v1/master-key/status", get(v1::master_key_status))
        .route("/api/v1/master-key/rotate", post(v1::master_key_rotate))
        .route(
            "/api/v1/orgs/{organization_id}/secrets/{key}",
            get(v1::eso_secret),
        )
        .route("/api/v1/resolve", post(resolve))
        .route("/api/v1/env", post(v1::env))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/verify", post(events_verify))
        .route("/api/v1/whoami", get(whoami))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Every route this router serves (method, path), for the isolation walk in the tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    (
        "GET",
        "/api/provider-credentials/organization/{organization_id}",
    ),
    ("POST", "/api/provider-credentials/create"),
    ("PUT", "/api/provider-credentials/{credential_id}"),
    ("DELETE", "/api/provider-credentials/{credential_id}"),
    ("PUT", "/api/provider-credentials/{credential_id}/activate"),
    (
        "PUT",
        "/api/provider-credentials/{credential_id}/deactivate",
    ),
    ("POST", "/v1/config-variables"),
    ("GET", "/v1/config-variables"),
    ("GET", "/v1/config-variables/{name}"),
    ("PUT", "/v1/config-variables/{name}"),
    ("DELETE", "/v1/config-variables/{name}"),
    ("GET", "/api/v1/credentials"),
    ("POST", "/api/v1/credentials"),
    ("GET", "/api/v1/credentials/{credential_id}"),
    ("PATCH", "/api/v1/credentials/{credential_id}"),
    ("DELETE", "/api/v1/credentials/{credential_id}"),
    ("POST", "/api/v1/credentials/{credential_id}/activate"),
    ("POST", "/api/v1/credentials/{credential_id}/deactivate"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{token_id}"),
    ("GET", "/api/v1/master-key/status"),
    ("POST", "/api/v1/master-key/rotate"),
    ("GET", "/api/v1/orgs/{organization_id}/secrets/{key}"),
    ("GET", "/api/v1/orgs"),
    ("POST", "/api/v1/orgs"),
    ("POST", "/api/v1/resolve"),
    ("POST", "/api/v1/env"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/events/verify"),
    ("GET", "/api/v1/whoami"),
];

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.vault.key_status().await {
        Ok(status) if status.audit_chain_ok => (StatusCode::OK, "ready\n").into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the master keys do not open this vault\n",
        )
            .into_response(),
        Err(e) => ApiError::Unavailable(format!("the store is not reachable: {e}")).into_response(),
    }
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!(caller.0))
}

pub(super) fn parse_org(s: &str) -> Result<OrgId, ApiError> {
    Ok(OrgId::new(s)?)
}

fn parse_id(s: &str) -> Result<CredentialId, ApiError> {
    Ok(CredentialId::new(s)?)
}

/// Loads a credential the caller may act on with one of `roles`; one of another organization
/// is "not found", exactly like one that does not exist.
pub(super) async fn visible_credential(
    state: &AppState,
    caller: &Caller,
    id: &str,
    roles: &[Role],
) -> Result<CredentialView, ApiError> {
    let id = parse_id(id)?;
    let not_found = || ApiError::NotFound(format!("credential {id} not found"));
    let view = state.vault.get_credential(&id).await.map_err(|e| match e {
        keyward_store::VaultError::NotFound(_) => not_found(),
        other => other.into(),
    })?;
    if !caller.0.sees(&view.org) {
        return Err(not_found());
    }
    caller.require(&view.org, roles)?;
    Ok(view)
}

// ----- the admin guide --------------------------------------------------------------------

async fn guide_list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    let org = parse_org(&org)?;
    caller.require(&org, &[Role::OrgAdmin, Role::Viewer])?;
    state.vault.require_org(&org).await?;
    Ok(Json(state.vault.list_credentials(Some(&org), None).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuideCreate {
    organization_id: String,
    provider: String,
    credential_name: String,
    api_key: Option<String>,
    api_base: Option<String>,
}

async fn guide_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<GuideCreate>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let org = parse_org(&body.organization_id)?;
    caller.require(&org, &[Role::OrgAdmin])?;
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
    new.format_check = FormatCheck::Enforce;
    let view = state.vault.add_credential(new, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuideUpdate {
    credential_name: Option<String>,
    api_key: Option<String>,
    api_base: Option<String>,
}

async fn guide_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GuideUpdate>,
) -> Result<Json<CredentialView>, ApiError> {
    let view = visible_credential(&state, &caller, &id, &[Role::OrgAdmin]).await?;
    let mut update = CredentialUpdate {
        name: body
            .credential_name
            .as_deref()
            .map(CredentialName::new)
            .transpose()?,
        secret: body.api_key.map(SecretString::from),
        ..CredentialUpdate::default()
    };
    if let Some(base) = body.api_base {
        update.fields.insert("base_url".into(), base);
    }
    Ok(Json(
        state
            .vault
            .update_credential(&view.id, None, update, &caller.actor())
            .await?,
    ))
}

async fn guide_set_active(
    state: AppState,
    caller: Caller,
    id: String,
    active: bool,
) -> Result<Json<CredentialView>, ApiError> {
    let view = visible_credential(&state, &caller, &id, &[Role::OrgAdmin]).await?;
    Ok(Json(
        state
            .vault
            .set_credential_active(&view.id, active, &caller.actor())
            .await?,
    ))
}

async fn guide_activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    guide_set_active(state, caller, id, true).await
}

async fn guide_deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    guide_set_active(state, caller, id, false).await
}

async fn guide_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let view = visible_credential(&state, &caller, &id, &[Role::OrgAdmin]).await?;
    state
        .vault
        .delete_credential(&view.id, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- /api/v1 ----------------------------------------------------------------------------

async fn orgs_list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let orgs = state.vault.list_orgs().await?;
    let visible: Vec<_> = orgs.into_iter().filter(|o| caller.0.sees(&o.id)).collect();
    Ok(Json(json!(visible)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgCreate {
    id: String,
    name: Option<String>,
}

async fn orgs_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OrgCreate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let org = state
        .vault
        .create_org(&parse_org(&body.id)?, body.name.as_deref(), &caller.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(json!(org))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    organization_id: String,
    provider: String,
    credential_name: Option<String>,
}

/// The provider config object: the key and the fields a client needs.
async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    let org = parse_org(&body.organization_id)?;
    caller.require(&org, &[Role::OrgAdmin, Role::Resolver])?;
    let mut req = ResolveRequest::new(org, Provider::get(&body.provider)?);
    req.name = body
        .credential_name
        .as_deref()
        .map(CredentialName::new)
        .transpose()?;
    // The server's own environment belongs to the operator, not to a tenant.
    req.env_fallback = false;
    let resolved = state.vault.resolve(&req, &caller.actor()).await?;
    Ok(Json(v1::config_object(&resolved)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    filter: Option<String>,
    limit: Option<i64>,
    /// A cursor: only events before this sequence number (`next_cursor` of the last page).
    before: Option<i64>,
}

async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut filter: EventFilter = q.filter.as_deref().unwrap_or("").parse()?;
    if caller.0.role != Role::Admin {
        // An organization's tokens read their own organization's trail, and nothing else.
        let own = caller.0.org.clone().ok_or(ApiError::Forbidden(
            "this token belongs to no organization".into(),
        ))?;
        caller.require(&own, &[Role::OrgAdmin, Role::Viewer])?;
        if filter.org.as_deref().is_some_and(|o| o != own.as_str()) {
            return Err(ApiError::NotFound(format!(
                "organization '{}' not found",
                filter.org.unwrap_or_default()
            )));
        }
        filter.org = Some(own.to_string());
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    filter.before = q.before;
    let events = state.vault.list_events(&filter, limit).await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "items": events, "next_cursor": next_cursor })))
}

async fn events_verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(json!(state.vault.verify_events().await?)))
}
