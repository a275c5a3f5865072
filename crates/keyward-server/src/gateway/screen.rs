//! What is refused before the token is looked up: methods no provider API is asked, paths
//! that could leave the base URL (or, for Bedrock, that are not one of its runtime's
//! operations), declared bodies over the limit.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;

use super::answers::{provider_error, too_large};
use super::{MAX_BODY, guard, raw_tail};

/// Refuses, before anything else, what no provider API is asked: a method outside
/// [`guard::METHODS`] (405), a path that could leave the base URL (400), and a declared body
/// over the limit (413). `skip` is how many path segments are the route's own.
pub(super) fn screen(
    provider: &Provider,
    parts: &axum::http::request::Parts,
    skip: usize,
) -> Option<Response> {
    if !guard::method_allowed(&parts.method) {
        let mut r = provider_error(
            provider,
            StatusCode::METHOD_NOT_ALLOWED,
            "the gateway forwards only GET, POST, PUT, PATCH, DELETE, HEAD and OPTIONS",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(guard::ALLOW));
        return Some(r);
    }
    let path = raw_tail(parts.uri.path(), skip);
    if provider.auth == AuthStyle::AwsSigV4 {
        if !guard::bedrock_path_is_safe(path) {
            return Some(provider_error(
                provider,
                StatusCode::BAD_REQUEST,
                guard::PATH_REFUSED,
            ));
        }
        if parts.method != axum::http::Method::POST || !guard::is_bedrock_operation(path) {
            return Some(provider_error(
                provider,
                StatusCode::NOT_FOUND,
                "the gateway serves Bedrock's runtime operations: POST model/{modelId}/ invoke, invoke-with-response-stream, converse, converse-stream or count-tokens",
            ));
        }
    } else if !guard::path_is_safe(path) {
        return Some(provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            guard::PATH_REFUSED,
        ));
    } else if provider.auth == AuthStyle::ServiceAccount
        && !guard::is_vertex_operation(&parts.method, path)
    {
        return Some(provider_error(
            provider,
            StatusCode::NOT_FOUND,
            "the gateway serves Vertex AI's inference calls (POST .../models/M:generateContent and the like, .../endpoints/E:predict) and lists Google's models; nothing else",
        ));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Some(too_large(provider));
    }
    None
}
