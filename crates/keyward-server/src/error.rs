//! One error type for every route, answered as RFC 9457 `application/problem+json`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_store::VaultError;
use serde_json::json;

/// What a route can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is wrong; the message says how.
    BadRequest(String),
    /// 401: no valid token.
    Unauthorized,
    /// 403: the token may not do this.
    Forbidden(String),
    /// 404: no such thing (also for things of another organization: existence does not leak).
    NotFound(String),
    /// 404: the organization has no key for the provider (and no fallback answered); the
    /// answer says so with `"code": "no_credential"`, so that a client can fall back to its own
    /// environment without mistaking a wrong organization for it.
    NoCredential(String),
    /// 424: the provider, asked on the caller's behalf (model discovery), refused or did not
    /// answer; the message says which. Not a 5xx: Keyward itself is fine, and so was the
    /// request; what it depends on failed.
    Upstream(String),
    /// 409: it exists already, or changed meanwhile, or cannot be opened.
    Conflict(String),
    /// 409: a thing of that name exists already.
    AlreadyExists(String),
    /// 409: it changed since the version the request names (compare-and-set).
    Stale(String),
    /// 400: a key that does not look like the provider's (it may be stored anyway).
    KeyFormat(String),
    /// 400: a provider the registry does not hold; `"code": "unknown_provider"`, so that a
    /// client can tell it from any other refusal (Open Notebook's key provider answers False).
    UnknownProvider(String),
    /// 422: the request was understood but what it asks for cannot be done (a gateway config
    /// that does not load); the message says why.
    Unprocessable(String),
    /// 413: the body is larger than any legitimate request.
    PayloadTooLarge,
    /// 429: too many failed authentications from this address; retry after so many seconds.
    TooManyRequests(u64),
    /// 429: too many reads of one kind running at once (audit-log listings); retry in a
    /// second. The store is fine.
    Busy(String),
    /// 503: the store or the audit log cannot be written; nothing was changed. Retry-After.
    Unavailable(String),
    /// 503: the store went away while a write was being committed; it may have been saved.
    /// The answer names the record's id (`id`), so that the client can look.
    OutcomeUnknown {
        /// What to tell the client.
        detail: String,
        /// The record's id.
        id: String,
    },
    /// 500: a bug or an outage; the details are logged, not returned.
    Internal(String),
}

impl ApiError {
    /// The words a form shows next to what was typed, for a refusal of the input itself
    /// (400, 409, 422); `None` for anything else, which is an error page.
    pub(crate) fn form_words(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest(m)
            | ApiError::UnknownProvider(m)
            | ApiError::Conflict(m)
            | ApiError::AlreadyExists(m)
            | ApiError::Stale(m)
            | ApiError::KeyFormat(m)
            | ApiError::Unprocessable(m) => Some(m),
            _ => None,
        }
    }

    /// What the answer's `detail` says, for a page or a log line (an internal error's
    /// details stay in the log).
    pub(crate) fn words(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error; see the server log".to_owned(),
            ApiError::Unauthorized => "a valid bearer token is required".to_owned(),
            ApiError::PayloadTooLarge => "the request body is too large".to_owned(),
            ApiError::TooManyRequests(secs) => {
                format!("too many failed authentications from this address; retry in {secs} s")
            }
            ApiError::KeyFormat(m) => {
                format!("{m} (to store it anyway, send \"skip_format_check\": true)")
            }
            ApiError::BadRequest(m)
            | ApiError::UnknownProvider(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::NoCredential(m)
            | ApiError::Upstream(m)
            | ApiError::Conflict(m)
            | ApiError::AlreadyExists(m)
            | ApiError::Stale(m)
            | ApiError::Unprocessable(m)
            | ApiError::Unavailable(m)
            | ApiError::Busy(m)
            | ApiError::OutcomeUnknown { detail: m, .. } => m.clone(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::KeyFormat(_) | ApiError::UnknownProvider(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoCredential(_) => StatusCode::NOT_FOUND,
            ApiError::Upstream(_) => StatusCode::FAILED_DEPENDENCY,
            ApiError::Conflict(_) | ApiError::AlreadyExists(_) | ApiError::Stale(_) => {
                StatusCode::CONFLICT
            }
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) | ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::InvalidInput(m) => ApiError::BadRequest(m),
            VaultError::KeyFormat(m) => ApiError::KeyFormat(m),
            VaultError::AlreadyExists(_) => ApiError::AlreadyExists(e.to_string()),
            VaultError::Conflict { .. } => ApiError::Stale(e.to_string()),
            VaultError::NotFound(_) => ApiError::NotFound(e.to_string()),
            VaultError::NoCredential(_) => ApiError::NoCredential(e.to_string()),
            VaultError::Undecryptable(_) => ApiError::Conflict(e.to_string()),
            VaultError::AuditUnavailable(_) => ApiError::Unavailable(e.to_string()),
            VaultError::Busy(m) => ApiError::Busy(m),
            VaultError::OutcomeUnknown { ref id, .. } => ApiError::OutcomeUnknown {
                id: id.clone(),
                detail: e.to_string(),
            },
            VaultError::Unavailable(_) | VaultError::Connect(_) => {
                // The driver's words stay in the log.
                tracing::warn!(error = %e, "the store is unavailable");
                ApiError::Unavailable(STORE_UNAVAILABLE.to_owned())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<keyward_core::CoreError> for ApiError {
    fn from(e: keyward_core::CoreError) -> Self {
        match e {
            keyward_core::CoreError::UnknownProvider(m) => ApiError::UnknownProvider(m),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests(secs) => Some(*secs),
            ApiError::Busy(_) => Some(1),
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown { .. } => Some(5),
            _ => None,
        };
        let extensions = match &self {
            ApiError::OutcomeUnknown { id, .. } => json!({ "outcome": "unknown", "id": id }),
            ApiError::NoCredential(_) => json!({ "code": "no_credential" }),
            ApiError::UnknownProvider(_) => json!({ "code": "unknown_provider" }),
            _ => json!({}),
        };
        if let ApiError::Internal(real) = &self {
            // Vault errors never hold secrets; still, the client gets no internals.
            tracing::error!(error = %real, "internal error");
        }
        let detail = self.words();
        let mut response = problem_with(status, &detail, extensions);
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A problem+json answer. Every detail goes through [`scrub`] on its way out: whatever a
/// message came to quote, a word that looks like a key does not leave.
///
/// [`scrub`]: keyward_core::secret_like::scrub
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    problem_with(status, detail, json!({}))
}

/// What the API answers while the store is away.
pub(crate) const STORE_UNAVAILABLE: &str =
    "the store is unavailable; nothing was changed; retry in a few seconds";

/// [`problem`] with extension members (RFC 9457 §3.2).
fn problem_with(status: StatusCode, detail: &str, extensions: serde_json::Value) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": keyward_core::secret_like::scrub(detail),
    });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extensions) {
        body.extend(extra);
    }
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Turns the errors that axum answers by itself (a query or path that does not parse, a
/// method the route does not take) into problem+json like every other, their texts scrubbed:
/// a query parser's ``unknown field `...` `` quotes what the caller sent.
pub(crate) async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut answer = problem(status, &detail);
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    answer
}
