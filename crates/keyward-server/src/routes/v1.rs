//! Keyward's own `/api/v1` routes: credentials, API tokens, master keys, and the secret lookup
//! shaped for the Kubernetes External Secrets Operator.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use keyward_core::credential::{
    CredentialUpdate, CredentialView, FormatCheck, Modality, NewCredential,
};
use keyward_core::resolve::Resolved;
use keyward_core::{CredentialName, Millis, OrgId, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_org;
use crate::auth::{ApiJson, Caller};
use crate::ops::{audit, credentials, resolve, server, tokens};
use crate::{ApiError, AppState, LoadTrigger};

/// The provider config object a resolution answers with (one shape on every surface).
pub(super) fn config_object(resolved: &Resolved) -> Value {
    resolved.config_object()
}

// ----- credentials ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CredQuery {
    organization_id: Option<String>,
    provider: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// Credentials, masked; an organization's token sees its own organization only. Paginated
/// with `limit` (default 100, at most 1000) and `offset`.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "credentials", params(("organization_id" = Option<String>, Query, description = "only this organization"), ("provider" = Option<String>, Query, description = "only this provider"), ("limit" = Option<usize>, Query, description = "page size (default 100)"), ("offset" = Option<usize>, Query, description = "skip this many")), responses((status = 200, description = "Credentials, masked, paginated", body = crate::openapi::CredentialPage)))]
pub(super) async fn creds_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CredQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = q.organization_id.as_deref().map(parse_org).transpose()?;
    let provider = q.provider.as_deref().map(Provider::get).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let listing = credentials::Listing {
        org,
        provider,
        limit: limit as u64,
        offset: offset as u64,
        ..credentials::Listing::default()
    };
    let page = credentials::list(&state, &caller.0, listing).await?;
    let (items, total) = (page.items, page.total);
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let next = (offset.saturating_add(items.len()) < total).then_some(offset + items.len());
    Ok(Json(
        json!({ "items": items, "total": total, "next_offset": next }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CredCreate {
    organization_id: String,
    provider: String,
    name: String,
    api_key: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    modalities: Vec<Modality>,
    priority: Option<i64>,
    weight: Option<i64>,
    active: Option<bool>,
    #[serde(default)]
    skip_format_check: bool,
}

#[utoipa::path(post, path = "/api/v1/credentials", tag = "credentials", request_body = CredCreate, responses((status = 201, description = "The credential, created", body = CredentialView)))]
pub(super) async fn creds_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CredCreate>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let org = parse_org(&body.organization_id)?;
    let mut new = NewCredential::new(
        org,
        Provider::get(&body.provider)?,
        CredentialName::new(&body.name)?,
        body.api_key.map(SecretString::from),
    );
    new.fields = body.fields;
    new.modalities = body.modalities;
    new.priority = body.priority.unwrap_or(new.priority);
    new.weight = body.weight.unwrap_or(new.weight);
    new.active = body.active.unwrap_or(true);
    if body.skip_format_check {
        new.format_check = FormatCheck::Skip;
    }
    let view = credentials::create(&state, &caller.0, new).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/api/v1/credentials/{credential_id}", tag = "credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "One credential, masked", body = CredentialView)))]
pub(super) async fn creds_get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    Ok(Json(credentials::read(&state, &caller.0, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CredPatch {
    name: Option<String>,
    api_key: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[schema(value_type = Option<Vec<String>>)]
    modalities: Option<Vec<Modality>>,
    priority: Option<i64>,
    weight: Option<i64>,
    active: Option<bool>,
    /// Apply only if the credential is still at this version (compare-and-set).
    if_version: Option<i64>,
    #[serde(default)]
    skip_format_check: bool,
}

#[utoipa::path(patch, path = "/api/v1/credentials/{credential_id}", tag = "credentials", request_body = CredPatch, params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "Change a credential (compare-and-set with if_version)", body = CredentialView), (status = 422, description = "A new base URL or endpoint without the key: moving a stored key takes the key again")))]
pub(super) async fn creds_patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CredPatch>,
) -> Result<Json<CredentialView>, ApiError> {
    let update = CredentialUpdate {
        name: body.name.as_deref().map(CredentialName::new).transpose()?,
        secret: body.api_key.map(SecretString::from),
        format_check: Some(if body.skip_format_check {
            FormatCheck::Skip
        } else {
            FormatCheck::Enforce
        }),
        fields: body.fields,
        modalities: body.modalities,
        active: body.active,
        priority: body.priority,
        weight: body.weight,
    };
    Ok(Json(
        credentials::update(&state, &caller.0, &id, body.if_version, update).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/credentials/{credential_id}", tag = "credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 204, description = "Deleted")))]
pub(super) async fn creds_delete(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<StatusCode, ApiError> {
    super::guide_delete(state, caller, id).await
}

#[utoipa::path(post, path = "/api/v1/credentials/{credential_id}/activate", tag = "credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "Let resolution use a credential", body = CredentialView)))]
pub(super) async fn creds_activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    super::guide_set_active(state, caller, id, true).await
}

#[utoipa::path(post, path = "/api/v1/credentials/{credential_id}/deactivate", tag = "credentials", params(("credential_id" = String, Path, description = "a credential's id")), responses((status = 200, description = "Stop resolution from using a credential", body = CredentialView)))]
pub(super) async fn creds_deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    super::guide_set_active(state, caller, id, false).await
}

/// An expiry `seconds` from now.
fn expires_at(seconds: Option<i64>) -> Result<Option<Millis>, ApiError> {
    seconds
        .map(|s| {
            if s > 0 {
                Ok(Millis(
                    Millis::now().0.saturating_add(s.saturating_mul(1000)),
                ))
            } else {
                Err(ApiError::BadRequest(
                    "expires_in_seconds must be positive".into(),
                ))
            }
        })
        .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestQuery {
    timeout_seconds: Option<u64>,
}

impl TestQuery {
    /// How long to wait for the provider: 10 s unless asked, 1 to 60 s.
    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.unwrap_or(10).clamp(1, 60))
    }
}

#[utoipa::path(post, path = "/api/v1/credentials/{credential_id}/test", tag = "credentials", params(("credential_id" = String, Path, description = "a credential's id"), ("timeout_seconds" = Option<u64>, Query, description = "how long to wait for the provider (default 10, at most 60)")), responses((status = 200, description = "The outcome, stored on the credential and audited", body = crate::openapi::KeyTest)))]
pub(super) async fn creds_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TestQuery>,
) -> Result<Json<Value>, ApiError> {
    let (outcome, view) = credentials::test(&state, &caller.0, &id, q.timeout()).await?;
    Ok(Json(
        json!({ "ok": outcome.is_ok(), "result": outcome.to_string(), "credential": view }),
    ))
}

/// Lists the models a credential's key reaches: the provider's model list, through the
/// credential's base URL (the key test's request), by name; audited as `discover`.
#[utoipa::path(post, path = "/api/v1/credentials/{credential_id}/discover", tag = "credentials", params(("credential_id" = String, Path, description = "a credential's id"), ("timeout_seconds" = Option<u64>, Query, description = "how long to wait for the provider (default 10, at most 60)")), responses((status = 200, description = "The models the key reaches, by name (audited)", body = crate::openapi::DiscoveredModels), (status = 422, description = "The provider's models cannot be listed with a plain request (Vertex, Bedrock)", body = crate::openapi::Problem, content_type = "application/problem+json"), (status = 424, description = "The provider refused the key or did not answer; `detail` says which", body = crate::openapi::Problem, content_type = "application/problem+json")))]
pub(super) async fn creds_discover(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TestQuery>,
) -> Result<Json<Value>, ApiError> {
    let (view, models) = credentials::discover(&state, &caller.0, &id, q.timeout()).await?;
    Ok(Json(json!(crate::openapi::DiscoveredModels {
        credential_id: view.id.to_string(),
        provider: view.provider.clone(),
        models,
    })))
}

// ----- providers ---------------------------------------------------------------------------

/// The provider registry: each provider's id, names, and the variables its credential sets
/// (what a client needs to set the same ones as `keyward run`, and to fall back to its own
/// environment the same way). Any role.
#[utoipa::path(get, path = "/api/v1/providers", tag = "resolution", responses((status = 200, description = "Every provider Keyward knows, in display order", body = crate::openapi::ProviderList)))]
pub(super) async fn providers(caller: Caller) -> Result<Json<Value>, ApiError> {
    let items: Vec<crate::openapi::ProviderEntry> = crate::ops::providers::registry(&caller.0)?
        .iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!(crate::openapi::ProviderList { items })))
}

/// Which providers the server's own environment could serve, and under which variable: names
/// only. Admins only.
#[utoipa::path(get, path = "/api/v1/env-status", tag = "resolution", responses((status = 200, description = "For each provider, whether the server's environment holds its key (admin)", body = crate::openapi::EnvStatusAnswer)))]
pub(super) async fn env_status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let providers = crate::ops::providers::env_status(&state, &caller.0)?;
    Ok(Json(json!(crate::openapi::EnvStatusAnswer {
        env_fallback_default: state.env_fallback_default(),
        providers,
    })))
}

// ----- API tokens -------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenCreate {
    name: String,
    role: String,
    organization_id: Option<String>,
    /// Lifetime in seconds.
    expires_in_seconds: Option<i64>,
}

/// Creates a token; the response holds it once, in `token`. Admins make any token; an
/// organization's admin makes tokens of its own organization below admin.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenCreate, responses((status = 201, description = "The new API token, shown once in `token`", body = crate::openapi::TokenCreated)))]
pub(super) async fn tokens_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TokenCreate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = tokens::NewToken {
        role: body.role.parse()?,
        org: body.organization_id.as_deref().map(parse_org).transpose()?,
        expires_at: expires_at(body.expires_in_seconds)?,
        name: body.name,
    };
    let (token, view) = tokens::create(&state, &caller.0, new).await?;
    let mut v = json!(view);
    v["token"] = Value::String(token.expose_secret().to_owned());
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, description = "API tokens, never the tokens themselves", body = Vec<keyward_store::TokenView>)))]
pub(super) async fn tokens_list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(tokens::list(&state, &caller.0).await?)))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}", tag = "tokens", params(("token_id" = String, Path, description = "a token's id")), responses((status = 200, description = "Revoked", body = keyward_store::TokenView)))]
pub(super) async fn tokens_revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(tokens::revoke(&state, &caller.0, &id).await?)))
}

// ----- master keys ------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/master-key/status", tag = "master-keys", responses((status = 200, description = "Rows per master key id (admin)", body = keyward_store::KeyStatus)))]
pub(super) async fn master_key_status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        server::master_key_status(&state, &caller.0).await?
    )))
}

#[utoipa::path(post, path = "/api/v1/master-key/rotate", tag = "master-keys", responses((status = 200, description = "Rewrap every data key under the primary key (admin)", body = keyward_store::RotationReport)))]
pub(super) async fn master_key_rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        server::rotate_master_key(&state, &caller.0, |_| {}).await?
    )))
}

// ----- console sessions and single sign-on ------------------------------------------------

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", responses((status = 200, description = "Every live console session, of tokens and of people signed in through single sign-on (admin)", body = [keyward_store::SessionView])))]
pub(super) async fn sessions_list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(server::list_sessions(&state, &caller.0).await?)))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session's id, as listed")), responses((status = 204, description = "The session ended, everywhere (admin); audited")))]
pub(super) async fn sessions_end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    server::end_session(&state, &caller.0, &id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/sso", tag = "sessions", responses((status = 200, description = "Whether single sign-on is configured and its provider answers (admin)", body = crate::identity::oidc::SsoStatus)))]
pub(super) async fn sso_status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(server::sso_status(&state, &caller.0).await?)))
}

// ----- the gateway -------------------------------------------------------------------------

/// `POST /api/v1/gateway/reload`: loads the static targets file again; if it does not load,
/// the targets in use stay and the answer says why.
#[utoipa::path(post, path = "/api/v1/gateway/reload", tag = "gateway", responses((status = 200, description = "The targets now served (admin)", body = crate::openapi::TargetsReloaded), (status = 422, description = "The file did not load; the previous targets stay")))]
pub(super) async fn gateway_reload(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // The CLI says it is the CLI; anything else is a call of the API.
    let by = match headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        Some(agent) if agent.starts_with("keyward-cli/") => LoadTrigger::Cli,
        _ => LoadTrigger::Api,
    };
    match server::reload_gateway(&state, &caller.0, by).await? {
        Ok(loaded) => Ok(Json(json!({
            "targets": loaded.targets.iter().map(|t| &t.id).collect::<Vec<_>>(),
            "resolved": loaded.targets,
            "ignored": loaded.ignored,
            // The policy in force after the load (an immutable one in the store only tightens),
            // when the file has one.
            "audit_policy": loaded
                .audit_policy
                .map(|_| state.shared.gateway.audit_policy()),
        }))),
        Err(e) => Err(ApiError::Unprocessable(format!(
            "{e}; the previous targets stay in use"
        ))),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusQuery {
    /// Only this organization's targets and credentials.
    org: Option<String>,
}

/// `GET /api/v1/gateway/status`: the static targets (provider, base URL, the reference each
/// resolved, by name), their last load (when, by what, with what result), and per
/// organization and provider the active credentials and those set aside (failing or rate
/// limited, until when). Admins see everything; an organization's tokens see their own.
#[utoipa::path(get, path = "/api/v1/gateway/status", tag = "gateway", params(StatusQuery), responses((status = 200, description = "What the gateway serves now", body = crate::openapi::GatewayStatus)))]
pub(super) async fn gateway_status(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = q.org.as_deref().map(parse_org).transpose()?;
    Ok(Json(json!(
        server::gateway_status(&state, &caller.0, org.as_ref()).await?
    )))
}

/// `GET /api/v1/doctor`: what is wrong with this deployment, each finding with its fix (admins).
#[utoipa::path(get, path = "/api/v1/doctor", tag = "ops", responses((status = 200, description = "The doctor's findings (admin)", body = crate::doctor::Report)))]
pub(super) async fn doctor(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<crate::doctor::Report>, ApiError> {
    Ok(Json(server::doctor(&state, &caller.0).await?))
}

/// `GET /api/v1/orgs/{org}/usage`: gateway usage of the organization's credentials, gateway
/// tokens and static targets (written every second or so; the latest requests may not show
/// yet).
#[utoipa::path(get, path = "/api/v1/orgs/{organization_id}/usage", tag = "gateway", params(("organization_id" = String, Path, description = "an organization's slug")), responses((status = 200, description = "Request counts by upstream status, and last use", body = crate::openapi::UsageAnswer)))]
pub(super) async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org: OrgId = parse_org(&org)?;
    Ok(Json(
        json!({ "usage": audit::usage(&state, &caller.0, &org).await? }),
    ))
}

// ----- the External Secrets Operator lookup -----------------------------------------------

/// `GET /api/v1/orgs/{org}/secrets/{key}`: `{key}` is a provider id (the answer is that
/// provider's config object) or `var.NAME` (`{"value": ...}`); 404 when there is no such key.
#[utoipa::path(get, path = "/api/v1/orgs/{organization_id}/secrets/{key}", tag = "resolution", params(("organization_id" = String, Path, description = "an organization's slug"), ("key" = String, Path, description = "a provider id, or var.NAME")), responses((status = 200, description = "A secret for the External Secrets Operator: a variable's `value`, or a provider's config object", body = serde_json::Value)))]
pub(super) async fn eso_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let org: OrgId = parse_org(&org)?;
    match resolve::secret(&state, &caller.0, &org, &key).await? {
        resolve::Secret::Variable(value) => Ok(Json(
            json!({ "value": value.map(|v| v.expose_secret().to_owned()) }),
        )),
        resolve::Secret::Provider(resolved) => Ok(Json(config_object(&resolved))),
    }
}

// ----- provisioning -----------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvBody {
    organization_id: String,
    /// Only these providers; default: every provider with an active credential that opens.
    #[serde(default)]
    providers: Vec<String>,
}

/// What `keyward run` needs from a server: the config objects of an organization's providers,
/// resolved and audited together. A `resolver` token is enough.
#[utoipa::path(post, path = "/api/v1/env", tag = "resolution", request_body = EnvBody, responses((status = 200, description = "The config objects of an organization's providers (audited)", body = crate::openapi::EnvAnswer)))]
pub(super) async fn env(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EnvBody>,
) -> Result<Json<Value>, ApiError> {
    let org = parse_org(&body.organization_id)?;
    let resolved = resolve::many(&state, &caller.0, &org, &body.providers).await?;
    let objects: Vec<Value> = resolved
        .iter()
        .map(|r| resolve::answer(&state, r))
        .collect();
    Ok(Json(
        json!({ "organization_id": org, "providers": objects }),
    ))
}

// ----- gateway tokens ---------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewayTokenCreate {
    organization_id: String,
    name: String,
    /// Providers it may reach; empty for all.
    #[serde(default)]
    providers: Vec<String>,
    /// Requests per minute; absent for no limit.
    rpm: Option<i64>,
    /// Tokens per minute (input and output); absent for no limit.
    tpm: Option<i64>,
    /// Models it may ask for: names, or patterns with `*`; empty for any.
    #[serde(default)]
    models: Vec<String>,
    /// Lifetime in seconds.
    expires_in_seconds: Option<i64>,
}

/// What to change of a gateway token; what is absent stays.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewayTokenUpdate {
    /// Models it may ask for (names, or patterns with `*`); empty for any.
    models: Option<Vec<String>>,
    /// Requests per minute; `null` for no limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    rpm: Option<Option<i64>>,
    /// Tokens per minute; `null` for no limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    tpm: Option<Option<i64>>,
}

/// A field given (even as `null`) is `Some`; an absent one, thanks to `default`, `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/api/v1/gateway-tokens/{token_id}", tag = "gateway-tokens", params(("token_id" = String, Path, description = "a gateway token's id")), request_body = GatewayTokenUpdate, responses((status = 200, description = "What it may do now", body = keyward_store::GatewayTokenView)))]
pub(super) async fn gateway_tokens_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GatewayTokenUpdate>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        tokens::update_gateway(&state, &caller.0, &id, body.models, body.rpm, body.tpm).await?
    )))
}

#[utoipa::path(post, path = "/api/v1/gateway-tokens", tag = "gateway-tokens", request_body = GatewayTokenCreate, responses((status = 201, description = "The new gateway token, shown once in `token`", body = crate::openapi::GatewayTokenCreated)))]
pub(super) async fn gateway_tokens_create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<GatewayTokenCreate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = tokens::NewGatewayToken {
        org: parse_org(&body.organization_id)?,
        providers: body
            .providers
            .iter()
            .map(|p| Provider::get(p))
            .collect::<Result<Vec<_>, _>>()?,
        rpm: body.rpm,
        expires_at: expires_at(body.expires_in_seconds)?,
        name: body.name,
    };
    let (token, mut view) = tokens::create_gateway(&state, &caller.0, new).await?;
    if !body.models.is_empty() || body.tpm.is_some() {
        view = tokens::update_gateway(
            &state,
            &caller.0,
            &view.id,
            Some(body.models),
            None,
            Some(body.tpm),
        )
        .await?;
    }
    let mut v = json!(view);
    v["token"] = Value::String(token.expose_secret().to_owned());
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrgQuery {
    organization_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/gateway-tokens", tag = "gateway-tokens", params(("organization_id" = Option<String>, Query, description = "the organization (default: the caller's)")), responses((status = 200, description = "Gateway tokens, never the tokens themselves", body = Vec<keyward_store::GatewayTokenView>)))]
pub(super) async fn gateway_tokens_list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<OrgQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = q.organization_id.as_deref().map(parse_org).transpose()?;
    Ok(Json(json!(
        tokens::list_gateway(&state, &caller.0, org.as_ref()).await?
    )))
}

#[utoipa::path(delete, path = "/api/v1/gateway-tokens/{token_id}", tag = "gateway-tokens", params(("token_id" = String, Path, description = "a gateway token's id")), responses((status = 200, description = "Revoked", body = keyward_store::GatewayTokenView)))]
pub(super) async fn gateway_tokens_revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        tokens::revoke_gateway(&state, &caller.0, &id).await?
    )))
}
