//! What a gateway token's request may still do once the token checks out: ask for the models
//! its allow-list names, and fit in every budget and limit it falls under. Both are decided
//! before any provider is contacted, and refused in the provider's own error shape.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use keyward_store::{GatewayTokenView, UsageSubject};
use serde_json::json;

use super::answers::{body_fault_answer, provider_error, store_unavailable};
use super::budgets::{Alert, Limit, Stop, Ticket};
use super::{MAX_BODY, body};
use crate::AppState;

/// The model a request names in its path, for the providers that name it there: Gemini's and
/// Vertex's `.../models/M:generateContent` (a whole segment, before its action), Azure
/// OpenAI's `.../deployments/D/...`, Bedrock's `model/{modelId}/...` (whose ids hold `:`, and
/// `/` when they are ARNs). A Vertex AI endpoint serves whatever is deployed on it, whatever
/// the body says: its model is `endpoints/{id}` (a token limited to models must name it so),
/// except the OpenAI-compatible `endpoints/openapi`, whose model is the body's. Every other
/// provider's model is the body's.
pub(super) fn model_in_path(provider: &Provider, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    if provider.id == "vertex"
        && let Some(w) = segments.windows(2).find(|w| w[0] == "endpoints")
    {
        let id = w[1].split_once(':').map_or(w[1], |(id, _)| id);
        return (id != "openapi").then(|| format!("endpoints/{id}"));
    }
    let found = match provider.id {
        "gemini" | "vertex" => segments
            .windows(2)
            .rev()
            .find(|w| w[0] == "models")
            .and_then(|w| w[1].split_once(':').map(|(m, _)| m)),
        "azure_openai" => segments
            .windows(2)
            .rev()
            .find(|w| w[0] == "deployments")
            .map(|w| w[1]),
        "bedrock" => {
            let id = segments
                .windows(2)
                .find(|w| w[0] == "model")
                .map(|w| w[1])?;
            let name = percent_encoding::percent_decode_str(id)
                .decode_utf8()
                .ok()?
                .into_owned();
            return (!name.is_empty() && !name.contains(';')).then_some(name);
        }
        _ => None,
    }?;
    // A segment as written: decoded, so that an escape cannot hide the name it spells.
    let name = percent_encoding::percent_decode_str(found)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!name.is_empty() && !name.contains([';', ':'])).then_some(name)
}

/// The `model` of a JSON body.
pub(super) fn model_in_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<String>,
    }
    serde_json::from_slice::<Named>(body).ok()?.model
}

/// Whether the gateway asks the provider for a streamed answer's usage: OpenAI's and Azure
/// OpenAI's chat completions and completions, which report it only when asked
/// (`stream_options.include_usage`). Other OpenAI-compatible servers may refuse the option,
/// and are left as they are.
pub(super) fn asks_for_usage(provider: &Provider, method: &Method, path: &str) -> bool {
    matches!(provider.id, "openai" | "azure_openai")
        && method == Method::POST
        && path.ends_with("completions")
}

/// A streaming request's body with `stream_options.include_usage` set, when it streams without
/// asking for it; `None` when it is left as it came.
pub(super) fn with_usage_asked(body: &[u8]) -> Option<Vec<u8>> {
    // Most bodies do not stream: no need to parse them (unless they escape characters, which
    // could spell "stream").
    static STREAM: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"stream\""));
    if STREAM.find(body).is_none() && memchr::memchr(b'\\', body).is_none() {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("stream") != Some(&serde_json::Value::Bool(true))
        || v.pointer("/stream_options/include_usage") == Some(&serde_json::Value::Bool(true))
    {
        return None;
    }
    let options = v
        .as_object_mut()?
        .entry("stream_options")
        .or_insert(json!({}));
    options
        .as_object_mut()?
        .insert("include_usage".into(), json!(true));
    serde_json::to_vec(&v).ok()
}

/// Reads the client's body (at most the gateway's limit) to look into it.
pub(super) async fn read_body(provider: &Provider, body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body::client_body(body, MAX_BODY), usize::MAX)
        .await
        .map_err(|e| body_fault_answer(provider, body::body_fault(&e)))
}

/// Refuses a request for a model the token's allow-list does not name; `body` is read (and
/// handed back) only when the path does not name the model.
pub(super) async fn check_model(
    provider: &'static Provider,
    view: &GatewayTokenView,
    method: &Method,
    path: &str,
    body: Body,
) -> Result<Body, Response> {
    if view.models.is_empty() {
        return Ok(body);
    }
    let (model, body) = match model_in_path(provider, path) {
        Some(m) => (Some(m), body),
        None if method == Method::POST => {
            let bytes = read_body(provider, body).await?;
            (model_in_body(&bytes), Body::from(bytes))
        }
        // Listing models and the like name none and cost nothing.
        None => return Ok(body),
    };
    // Vertex AI's OpenAI-compatible route names models with their publisher
    // (`google/gemini-2.0-flash`), which the allow-list may name without it.
    let allowed = |m: &str| {
        view.allows_model(m)
            || (provider.id == "vertex"
                && m.split_once('/').is_some_and(|(_, n)| view.allows_model(n)))
    };
    match model {
        Some(m) if allowed(&m) => Ok(body),
        Some(m) => Err(provider_error(
            provider,
            StatusCode::FORBIDDEN,
            &format!(
                "this gateway token may not use the model {}; it may use: {}",
                keyward_core::secret_like::shown(&m),
                view.models.join(", ")
            ),
        )),
        None => Err(provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            &format!(
                "this gateway token may use only some models ({}), and the request names none",
                view.models.join(", ")
            ),
        )),
    }
}

/// Lets the request through every budget and limit in `limits`, or answers why not: 429 in the
/// provider's shape, naming the budget and when it resets (a spent budget also says
/// `x-should-retry: false`: the SDKs would only retry into the same refusal), or 503 when the
/// store cannot be asked for more allowance.
pub(super) async fn admit(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
    limits: &[std::sync::Arc<Limit>],
    ticket: &mut Ticket,
) -> Result<(), Response> {
    if limits.is_empty() {
        return Ok(());
    }
    let gw = &state.shared.gateway;
    let mut alerts = Vec::new();
    let admitted = gw
        .budgets
        .admit(state.vault.serving(), limits, ticket, &mut alerts)
        .await;
    send_alerts(alerts);
    let refused = match admitted {
        Ok(()) => return Ok(()),
        Err(Stop::Unavailable) => store_unavailable(
            provider,
            "the gateway cannot check this request's budget while its store is unavailable",
        ),
        Err(Stop::Refused(why)) => {
            let mut r = provider_error(provider, StatusCode::TOO_MANY_REQUESTS, &why.message);
            if why.permanent && !matches!(provider.auth, AuthStyle::XApiKey | AuthStyle::GoogApiKey)
            {
                // OpenAI's own word for money that has run out.
                let body = json!({ "error": {
                    "message": keyward_core::secret_like::scrub(&why.message),
                    "type": "insufficient_quota",
                    "code": "budget_exceeded",
                } });
                r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            }
            if let Some(secs) = why.retry_after
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            if why.permanent {
                r.headers_mut()
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
            r
        }
    };
    gw.usage.record(
        UsageSubject::GatewayToken,
        &view.id,
        &view.org,
        provider.id,
        refused.status().as_u16(),
    );
    Err(refused)
}

/// Sends each alert's webhook (the audit event is already written, with the report that
/// crossed it): a POST of JSON, given 10 seconds, its answer ignored.
pub(crate) fn send_alerts(alerts: Vec<Alert>) {
    let mut posts = Vec::new();
    for a in alerts {
        tracing::info!(budget = %a.limit.id, percent = a.percent, "budget alert");
        let Some(url) = a.limit.webhook.clone() else {
            continue;
        };
        let resets_at = a.limit.period.end(a.period_start);
        let body = json!({
            "event": "budget_alert",
            "budget_id": a.limit.id,
            "org": a.limit.org,
            "whose": a.limit.whose,
            "metric": a.limit.metric,
            "period": a.limit.period,
            "percent": a.percent,
            "spent": a.spent,
            "limit": a.limit.amount,
            "period_start": a.period_start,
            "resets_at": resets_at,
        });
        posts.push((url, body));
    }
    if posts.is_empty() {
        return;
    }
    // One after another, lowest percentage first.
    tokio::spawn(async move {
        let client = match crate::identity::http_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "budget alerts' webhooks cannot be sent");
                return;
            }
        };
        for (url, body) in posts {
            let sent = client
                .post(&url)
                .timeout(std::time::Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            if let Err(e) = sent {
                // Without the URL, whose path and query may be its secret.
                tracing::warn!(error = %e.without_url(), "a budget alert's webhook failed");
            }
        }
    });
}
