//! Config variables: `/v1/config-variables`, and the same under Keyward's own
//! `/api/v1/variables`. A sensitive value is redacted in every response; `?reveal=true` on a
//! single variable returns it, audited.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use keyward_core::var::VarView;
use keyward_core::{OrgId, VarName};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_org;
use crate::auth::{ApiJson, Caller};
use crate::ops::variables;
use crate::{ApiError, AppState};

/// A variable as responses show it: `value` is `***` when sensitive.
fn shown(view: &VarView) -> Value {
    json!(view.redacted())
}

/// The organization a request names, if it names one.
fn named(org: Option<&str>) -> Result<Option<OrgId>, ApiError> {
    org.map(parse_org).transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeQuery {
    organization_id: Option<String>,
    #[serde(default)]
    reveal: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VarCreate {
    name: String,
    value: String,
    description: Option<String>,
    #[serde(default)]
    sensitive: bool,
    organization_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/config-variables", tag = "config-variables", request_body = VarCreate, responses((status = 201, description = "The variable, created (a sensitive value shown as ***)", body = keyward_core::var::VarView)))]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<VarCreate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let org = named(body.organization_id.as_deref())?;
    let var = variables::VarWrite {
        name: VarName::new(&body.name)?,
        value: SecretString::from(body.value),
        sensitive: body.sensitive,
        description: body.description,
    };
    let on = variables::scope(&caller.0, org.as_ref());
    let view = variables::write(&state, &caller.0, on, var, variables::Exists::No).await?;
    Ok((StatusCode::CREATED, Json(shown(&view))))
}

#[utoipa::path(get, path = "/v1/config-variables", tag = "config-variables", params(("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)")), responses((status = 200, description = "Variables, sensitive values as ***", body = Vec<keyward_core::var::VarView>)))]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.reveal {
        return Err(ApiError::BadRequest(
            "reveal applies to one variable: GET /v1/config-variables/{name}?reveal=true".into(),
        ));
    }
    let org = named(q.organization_id.as_deref())?;
    let on = variables::scope(&caller.0, org.as_ref());
    let vars = variables::list(&state, &caller.0, on).await?;
    Ok(Json(json!(vars.iter().map(shown).collect::<Vec<_>>())))
}

#[utoipa::path(get, path = "/v1/config-variables/{name}", tag = "config-variables", params(("name" = String, Path, description = "the variable's name"), ("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)"), ("reveal" = Option<bool>, Query, description = "return a sensitive value (audited)")), responses((status = 200, description = "One variable", body = keyward_core::var::VarView)))]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = named(q.organization_id.as_deref())?;
    let name = VarName::new(&name)?;
    let on = variables::scope(&caller.0, org.as_ref());
    let got = variables::read(&state, &caller.0, on, &name, q.reveal).await?;
    let mut v = shown(&got.view);
    if q.reveal
        && let Some(value) = &got.value
    {
        v["value"] = Value::String(value.expose_secret().to_owned());
    }
    Ok(Json(v))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VarPut {
    value: String,
    description: Option<String>,
    #[serde(default)]
    sensitive: bool,
    organization_id: Option<String>,
}

#[utoipa::path(put, path = "/v1/config-variables/{name}", tag = "config-variables", request_body = VarPut, params(("name" = String, Path, description = "the variable's name")), responses((status = 200, description = "The variable, changed", body = keyward_core::var::VarView)))]
pub(super) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<VarPut>,
) -> Result<Json<Value>, ApiError> {
    let org = named(body.organization_id.as_deref())?;
    let var = variables::VarWrite {
        name: VarName::new(&name)?,
        value: SecretString::from(body.value),
        sensitive: body.sensitive,
        description: body.description,
    };
    let on = variables::scope(&caller.0, org.as_ref());
    let view = variables::write(&state, &caller.0, on, var, variables::Exists::Yes).await?;
    Ok(Json(shown(&view)))
}

#[utoipa::path(delete, path = "/v1/config-variables/{name}", tag = "config-variables", params(("name" = String, Path, description = "the variable's name"), ("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)")), responses((status = 204, description = "Deleted")))]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> Result<StatusCode, ApiError> {
    let org = named(q.organization_id.as_deref())?;
    let name = VarName::new(&name)?;
    let on = variables::scope(&caller.0, org.as_ref());
    variables::delete(&state, &caller.0, on, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// The same routes under `/api/v1/variables` (one documented operation per path and method).

#[utoipa::path(post, path = "/api/v1/variables", tag = "config-variables", request_body = VarCreate, responses((status = 201, description = "The variable, created (a sensitive value shown as ***)", body = keyward_core::var::VarView)))]
pub(super) async fn v1_create(
    state: State<AppState>,
    caller: Caller,
    body: ApiJson<VarCreate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create(state, caller, body).await
}

#[utoipa::path(get, path = "/api/v1/variables", tag = "config-variables", params(("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)")), responses((status = 200, description = "Variables, sensitive values as ***", body = Vec<keyward_core::var::VarView>)))]
pub(super) async fn v1_list(
    state: State<AppState>,
    caller: Caller,
    q: Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    list(state, caller, q).await
}

#[utoipa::path(get, path = "/api/v1/variables/{name}", tag = "config-variables", params(("name" = String, Path, description = "the variable's name"), ("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)"), ("reveal" = Option<bool>, Query, description = "return a sensitive value (audited)")), responses((status = 200, description = "One variable", body = keyward_core::var::VarView)))]
pub(super) async fn v1_get(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
    q: Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    get(state, caller, name, q).await
}

#[utoipa::path(put, path = "/api/v1/variables/{name}", tag = "config-variables", request_body = VarPut, params(("name" = String, Path, description = "the variable's name")), responses((status = 200, description = "The variable, changed", body = keyward_core::var::VarView)))]
pub(super) async fn v1_put(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
    body: ApiJson<VarPut>,
) -> Result<Json<Value>, ApiError> {
    put(state, caller, name, body).await
}

#[utoipa::path(delete, path = "/api/v1/variables/{name}", tag = "config-variables", params(("name" = String, Path, description = "the variable's name"), ("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)")), responses((status = 204, description = "Deleted")))]
pub(super) async fn v1_delete(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
    q: Query<ScopeQuery>,
) -> Result<StatusCode, ApiError> {
    delete(state, caller, name, q).await
}
