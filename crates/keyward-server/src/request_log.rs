//! Every HTTP request's id and its access log line. The id is the client's `x-request-id` when
//! it is a plain name (1 to 64 letters, digits, `.`, `_`, `-`, and not shaped like a key),
//! else one made here (a UUID v7); it is on the answer's `x-request-id`, in the access line,
//! and in the details of every audit event the request writes (`keyward_store::for_request`).
//!
//! The access line (`target: keyward::access`, level info) names the method, the route's
//! template (`/api/v1/credentials/{credential_id}`, never the path as sent, nor its query),
//! the status, the duration, and who asked (the caller's id, and the organization for a
//! gateway token) as authentication found them: never a key or a token.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The header both ways.
pub(crate) const HEADER: &str = "x-request-id";

/// Who a request turned out to be from, filled in by authentication.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<(Option<String>, Option<String>)>>);

impl Seen {
    /// Notes the caller (an id: `token:…`, `gateway_token:…`, `EMAIL (sso)`) and its
    /// organization, when there is one.
    pub(crate) fn caller(&self, id: String, org: Option<&str>) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *seen = (Some(id), org.map(str::to_owned));
    }

    fn take(&self) -> (Option<String>, Option<String>) {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Notes `id` (and `org`) as the caller of the request `extensions` belong to.
pub(crate) fn note_caller(extensions: &axum::http::Extensions, id: String, org: Option<&str>) {
    if let Some(seen) = extensions.get::<Seen>() {
        seen.caller(id, org);
    }
}

/// The client's request id, when it is one to keep.
fn offered(req: &Request) -> Option<String> {
    let id = req.headers().get(HEADER)?.to_str().ok()?.trim();
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !keyward_core::secret_like::looks_like_secret(id);
    plain.then(|| id.to_owned())
}

/// Middleware: the request's id (taken or made), its audit events tagged with it, the answer
/// carrying it, and one access line.
pub(crate) async fn track(
    State(state): State<crate::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = offered(&req).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let seen = Seen::default();
    req.extensions_mut().insert(seen.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    // Under the audit policy's log_all_access, a gateway request is an audit event.
    let gateway = &state.shared.gateway;
    let path = (route.starts_with("/gateway/") && gateway.logs_all_access())
        .then(|| req.uri().path().to_owned());
    // The request's span (a trace's server span; a `traceparent` makes it a child): disabled,
    // and so free, unless traces are on.
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        keyward.request_id = %id,
    );
    crate::telemetry::adopt_parent(&span, req.headers());
    let start = Instant::now();
    let mut response = keyward_store::for_request(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    let (caller, org) = seen.take();
    let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Some(path) = path {
        let served = ["x-keyward-credential", "x-keyward-target"]
            .into_iter()
            .find_map(|h| Some((h, response.headers().get(h)?.to_str().ok()?)));
        gateway
            .audit_request(
                state.vault.serving(),
                &crate::gateway::audit_policy::RequestSeen {
                    request_id: &id,
                    method: method.as_str(),
                    path: &path,
                    status: response.status().as_u16(),
                    duration_ms,
                    caller: caller.as_deref(),
                    org: org.as_deref(),
                    served,
                },
            )
            .await;
    }
    tracing::info!(
        target: "keyward::access",
        request_id = %id,
        method = %method,
        route,
        status = response.status().as_u16(),
        duration_ms,
        caller = caller.as_deref().unwrap_or("-"),
        org = org.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::offered;

    #[test]
    fn a_request_id_is_kept_only_when_it_is_a_plain_name() {
        let with = |v: &str| {
            let req = axum::http::Request::builder()
                .header("x-request-id", v)
                .body(axum::body::Body::empty())
                .expect("request");
            offered(&req)
        };
        assert_eq!(with("abc-123_x.y").as_deref(), Some("abc-123_x.y"));
        assert_eq!(with(" 7f3c ").as_deref(), Some("7f3c"));
        for refused in [
            "",
            "a b",
            "id;drop",
            "kwg_abcdefghijklmnopqrstuvwxyz012345",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
            &"x".repeat(65),
        ] {
            assert_eq!(with(refused), None, "{refused:?}");
        }
    }
}
