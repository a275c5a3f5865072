//! Answers the gateway gives itself, in the shape the provider's SDKs parse: its own errors,
//! the missing key, the store being away, a body too large or unreadable.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use serde_json::json;

use super::body;

/// Errors answered in the shape the provider's SDKs parse.
/// The message is scrubbed like the API's details (it may name what the client sent).
pub(super) fn provider_error(provider: &Provider, status: StatusCode, message: &str) -> Response {
    let message = keyward_core::secret_like::scrub(message);
    let message = message.as_str();
    let body = match provider.auth {
        AuthStyle::XApiKey => json!({
            "type": "error",
            "error": { "type": match status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                400 | 405 | 413 => "invalid_request_error",
                404 => "not_found_error",
                _ => "api_error",
            }, "message": message },
        }),
        // Bedrock (rest-json): botocore reads the code from `x-amzn-ErrorType`, the text
        // from `message`.
        AuthStyle::AwsSigV4 => {
            let code = match status.as_u16() {
                401 | 403 => "AccessDeniedException",
                404 => "ResourceNotFoundException",
                429 => "ThrottlingException",
                400 | 405 | 413 => "ValidationException",
                503 => "ServiceUnavailableException",
                _ => "InternalServerException",
            };
            let mut r = (status, axum::Json(json!({ "message": message }))).into_response();
            r.headers_mut()
                .insert("x-amzn-errortype", HeaderValue::from_static(code));
            return r;
        }
        AuthStyle::GoogApiKey | AuthStyle::ServiceAccount => json!({
            "error": { "code": status.as_u16(), "message": message, "status": match status.as_u16() {
                400 | 413 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                405 => "UNIMPLEMENTED",
                429 => "RESOURCE_EXHAUSTED",
                _ => "UNAVAILABLE",
            } },
        }),
        _ => json!({
            "error": { "message": message, "type": match status.as_u16() {
                401 | 400 | 404 | 405 | 413 => "invalid_request_error",
                429 => "rate_limit_error",
                _ => "api_error",
            }, "code": match status.as_u16() {
                401 => "invalid_api_key",
                403 => "forbidden",
                429 => "rate_limit_exceeded",
                400 | 404 | 405 | 413 => "invalid_request",
                _ => "upstream_error",
            } },
        }),
    };
    (status, axum::Json(body)).into_response()
}

/// The answer when the organization has no key for the provider: permanent (403, and
/// `x-should-retry: false`, which the OpenAI and Anthropic SDKs honour), in the provider's
/// shape, saying which provider and organization and what an admin must do.
pub(super) fn no_key(provider: &Provider, missing: &keyward_core::resolve::NotFound) -> Response {
    let message = format!("Keyward gateway: {missing}");
    let mut r = provider_error(provider, StatusCode::FORBIDDEN, &message);
    if !matches!(
        provider.auth,
        AuthStyle::XApiKey
            | AuthStyle::GoogApiKey
            | AuthStyle::ServiceAccount
            | AuthStyle::AwsSigV4
    ) {
        // OpenAI's shape has a machine-readable code; say what this is.
        let body = json!({ "error": {
            "message": keyward_core::secret_like::scrub(&message),
            "type": "invalid_request_error",
            "code": "no_provider_key",
        } });
        r = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    r.headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    r
}

/// 503 with Retry-After: the store is away, try again shortly.
pub(super) fn store_unavailable(provider: &Provider, message: &str) -> Response {
    let mut r = provider_error(provider, StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

pub(super) fn too_large(provider: &Provider) -> Response {
    provider_error(
        provider,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is too large (the limit is 10 MiB)",
    )
}

/// The answer to a client whose body failed: too large, or else unreadable.
pub(super) fn body_fault_answer(provider: &Provider, fault: Option<body::BodyFault>) -> Response {
    match fault {
        Some(body::BodyFault::TooLarge) => too_large(provider),
        _ => provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            "the request body could not be read (a malformed chunked encoding, or a cut connection)",
        ),
    }
}
