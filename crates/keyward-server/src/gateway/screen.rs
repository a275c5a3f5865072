//! What is refused before the token is looked up: providers whose requests need signing,
//! methods no provider API is asked, paths that could leave the base URL, declared bodies over
//! the limit.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;

use super::answers::{provider_error, too_large};
use super::{MAX_BODY, guard, raw_tail};

/// Refuses providers whose requests need signing, which the gateway does not do.
pub(super) fn unsupported(provider: &Provider) -> Option<Response> {
    matches!(
        provider.auth,
        AuthStyle::ServiceAccount | AuthStyle::AwsSigV4
    )
    .then(|| {
        provider_error(
            provider,
            StatusCode::NOT_IMPLEMENTED,
            &format!(
                "the gateway does not sign requests for {}; use `keyward run` to give its SDK the credentials",
                provider.id
            ),
        )
    })
}

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
    if !guard::path_is_safe(raw_tail(parts.uri.path(), skip)) {
        return Some(provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            guard::PATH_REFUSED,
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
