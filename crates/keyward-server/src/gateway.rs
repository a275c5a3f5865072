//! The gateway: `ANY /gateway/{provider}/{path...}` forwards an LLM request to the provider with
//! the organization's key in place of the client's gateway token, streaming both ways.
//!
//! The hot path reads no database in the common case: gateway tokens and resolutions come from
//! in-process caches (one second of life), and nothing is written per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use keyward_core::resolve::{ResolveRequest, Source};
use keyward_store::{GATEWAY_TOKEN_PREFIX, GatewayTokenView, VaultError};
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::AppState;

/// Largest request body forwarded.
const MAX_BODY: usize = 10 * 1024 * 1024;
/// How long a checked gateway token is trusted before it is looked up again.
const TOKEN_TTL: Duration = Duration::from_secs(1);

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// The gateway's shared parts: the upstream client, the token cache, the rate counters.
pub(crate) struct Gateway {
    client: HttpsClient,
    first_byte_timeout: Duration,
    tokens: Mutex<HashMap<String, (Arc<GatewayTokenView>, Instant)>>,
    windows: Mutex<HashMap<String, (Instant, i64)>>,
    /// Credentials to avoid until the instant given (failing keys, rate-limited keys).
    cooling: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Default for Gateway {
    fn default() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // hyper's own client: the request body passes through as it came, with no conversion,
        // and a hyper client never follows redirects (they go back to the client as they are,
        // so the key is never sent on).
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_platform_verifier()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .build(https);
        Self {
            client,
            first_byte_timeout: Duration::from_secs(120),
            tokens: Mutex::default(),
            windows: Mutex::default(),
            cooling: Mutex::default(),
        }
    }
}

/// Errors answered in the shape the provider's SDKs parse.
fn provider_error(provider: &Provider, status: StatusCode, message: &str) -> Response {
    let body = match provider.auth {
        AuthStyle::XApiKey => json!({
            "type": "error",
            "error": { "type": match status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                _ => "api_error",
            }, "message": message },
        }),
        AuthStyle::GoogApiKey => json!({
            "error": { "code": status.as_u16(), "message": message, "status": match status.as_u16() {
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                429 => "RESOURCE_EXHAUSTED",
                _ => "UNAVAILABLE",
            } },
        }),
        _ => json!({
            "error": { "message": message, "type": match status.as_u16() {
                401 => "invalid_request_error",
                429 => "rate_limit_error",
                _ => "api_error",
            }, "code": match status.as_u16() {
                401 => "invalid_api_key",
                403 => "forbidden",
                429 => "rate_limit_exceeded",
                _ => "upstream_error",
            } },
        }),
    };
    (status, axum::Json(body)).into_response()
}

/// The gateway token, from whichever header the client's SDK sends it in.
fn gateway_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned())
    };
    let candidates = [
        from_header("authorization"),
        from_header("x-api-key"),
        from_header("x-goog-api-key"),
        from_header("api-key"),
        // Gemini's REST examples pass the key as `?key=`.
        query.and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("key="))
                .map(str::to_owned)
        }),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|t| t.starts_with(GATEWAY_TOKEN_PREFIX))
}

/// `{base}/{path}`, without repeating what both hold: a credential's base URL usually ends in
/// the API version (`https://api.openai.com/v1`, so that SDKs reading `OPENAI_BASE_URL` work),
/// and an SDK pointed at `/gateway/openai/v1` sends `v1/chat/completions`. The longest run of
/// path segments that ends the base and starts the path is written once.
pub(crate) fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    let base_path_start = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    let base_segments: Vec<&str> = base[base_path_start..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    let overlap = (1..=base_segments.len().min(path_segments.len()))
        .rev()
        .find(|&n| base_segments[base_segments.len() - n..] == path_segments[..n])
        .unwrap_or(0);
    let rest = path_segments[overlap..].join("/");
    if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{rest}")
    }
}

/// Headers that describe one connection, not the message, and are never forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Headers that may carry a key: the client's never reach the upstream.
fn credential_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "x-api-key" | "x-goog-api-key" | "api-key"
    )
}

impl Gateway {
    async fn check_token(
        &self,
        state: &AppState,
        token: &str,
    ) -> Result<Option<Arc<GatewayTokenView>>, VaultError> {
        {
            let cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((view, at)) = cache.get(token)
                && at.elapsed() < TOKEN_TTL
            {
                let expired = view
                    .expires_at
                    .is_some_and(|e| e <= keyward_core::Millis::now());
                return Ok((!expired).then(|| view.clone()));
            }
        }
        let found = state.vault.authenticate_gateway(token).await?.map(Arc::new);
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        match &found {
            Some(view) => {
                cache.insert(token.to_owned(), (view.clone(), Instant::now()));
            }
            None => {
                cache.remove(token);
            }
        }
        Ok(found)
    }

    /// Sets a credential aside for `wait`.
    fn cool_down(&self, credential: &str, wait: Duration) {
        let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        cooling.insert(credential.to_owned(), Instant::now() + wait);
    }

    /// Moves credentials that are cooling down behind the others (keeping each group's order).
    fn order_by_health(&self, candidates: &mut [keyward_core::resolve::Resolved]) {
        let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        if cooling.is_empty() {
            return;
        }
        let now = Instant::now();
        cooling.retain(|_, until| *until > now);
        candidates.sort_by_key(|c| match &c.source {
            Source::Vault { id, .. } => cooling.contains_key(id.as_str()),
            Source::Environment { .. } => false,
        });
    }

    /// Counts a request against the token's per-minute limit; false when over it.
    fn within_rate(&self, token: &GatewayTokenView) -> bool {
        let Some(rpm) = token.rpm else { return true };
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let entry = windows
            .entry(token.id.clone())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        entry.1 <= rpm
    }
}

/// `ANY /gateway/{provider}/{*path}`.
pub(crate) async fn forward(
    State(state): State<AppState>,
    Path((provider_id, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Ok(provider) = Provider::get(&provider_id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "error": { "message": format!("unknown provider {provider_id:?}") } }),
            ),
        )
            .into_response();
    };
    let gw = &state.gateway;
    let (parts, body) = req.into_parts();
    let query = parts.uri.query();

    // 1. The client's gateway token: checked before anything goes upstream.
    let Some(token) = gateway_token(&parts.headers, query) else {
        return provider_error(
            provider,
            StatusCode::UNAUTHORIZED,
            "a Keyward gateway token (kwg_...) is required",
        );
    };
    let view = match gw.check_token(&state, &token).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return provider_error(
                provider,
                StatusCode::UNAUTHORIZED,
                "unknown, revoked or expired gateway token",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "gateway token lookup failed");
            return provider_error(
                provider,
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway cannot check tokens right now",
            );
        }
    };
    if !view.allows(provider) {
        return provider_error(
            provider,
            StatusCode::FORBIDDEN,
            &format!("this gateway token may not use {}", provider.id),
        );
    }
    if !gw.within_rate(&view) {
        let mut r = provider_error(
            provider,
            StatusCode::TOO_MANY_REQUESTS,
            "this gateway token's requests-per-minute limit is reached",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }

    // 2. The organization's keys, in the strategy's order, from the resolution cache; keys
    //    cooling down go last.
    let mut rreq = ResolveRequest::new(view.org.clone(), provider);
    rreq.env_fallback = false;
    let mut candidates = match state.vault.resolve_candidates(&rreq).await {
        Ok(c) => c,
        Err(VaultError::NoCredential(e)) => {
            return provider_error(provider, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "resolution failed");
            return provider_error(
                provider,
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway cannot find a key right now",
            );
        }
    };
    gw.order_by_health(&mut candidates);

    // 3. The request's headers, less connection-level ones and any key; the query, less `key=`.
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) && !credential_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let query: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("key="))
        .collect();

    // 4. The body streams through when there is one key to try; with several, it is kept
    //    (bounded) so that it can be sent again to the next one.
    let mut seen = 0usize;
    let limited = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            seen += chunk.len();
            let over = seen > MAX_BODY;
            async move {
                if over {
                    Err(std::io::Error::other("request body too large"))
                } else {
                    Ok(chunk)
                }
            }
        });
    let mut streamed = Some(Body::from_stream(limited));
    let kept: Option<bytes::Bytes> = if candidates.len() > 1 {
        match axum::body::to_bytes(streamed.take().unwrap_or_default(), MAX_BODY).await {
            Ok(b) => Some(b),
            Err(_) => {
                return provider_error(
                    provider,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                );
            }
        }
    } else {
        None
    };

    // 5. Try the keys in turn: on 401/403 the key is marked failing and the request goes once
    //    more to the next; on 429 the key cools down for Retry-After and the next is tried; on
    //    a connection error the next is tried.
    let mut retried_auth = false;
    let mut last: Option<Response> = None;
    let total = candidates.len();
    for (i, resolved) in candidates.into_iter().enumerate() {
        let Source::Vault { id, .. } = &resolved.source else {
            continue;
        };
        let base = resolved
            .fields
            .get("base_url")
            .or_else(|| resolved.fields.get("endpoint"))
            .map(|b| b.trim_end_matches('/').to_owned());
        let Some(base) = base else {
            continue;
        };
        let mut url = join(&base, &path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        // The last try takes the headers; earlier ones copy them.
        let mut headers = if i + 1 == total {
            std::mem::take(&mut headers)
        } else {
            headers.clone()
        };
        if let Some(key) = &resolved.secret {
            let (name, value) = match provider.auth {
                AuthStyle::XApiKey => ("x-api-key", key.expose_secret().to_owned()),
                AuthStyle::GoogApiKey => ("x-goog-api-key", key.expose_secret().to_owned()),
                AuthStyle::ApiKeyHeader => ("api-key", key.expose_secret().to_owned()),
                _ => ("authorization", format!("Bearer {}", key.expose_secret())),
            };
            let Ok(mut value) = HeaderValue::from_str(&value) else {
                continue;
            };
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let body = match &kept {
            Some(b) => Body::from(b.clone()),
            None => streamed.take().unwrap_or_default(),
        };
        let Ok(mut upstream) = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(&url)
            .body(body)
        else {
            continue;
        };
        *upstream.headers_mut() = headers;
        let outcome =
            tokio::time::timeout(gw.first_byte_timeout, gw.client.request(upstream)).await;
        let response = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(provider = provider.id, credential = %id, error = %e, "upstream request failed");
                last = Some(provider_error(
                    provider,
                    StatusCode::BAD_GATEWAY,
                    "the provider could not be reached",
                ));
                continue;
            }
            Err(_) => {
                last = Some(provider_error(
                    provider,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the provider did not answer in time",
                ));
                continue;
            }
        };
        let status = response.status();
        let more = i + 1 < total;
        let cooldown = match status.as_u16() {
            401 | 403 if !retried_auth => {
                retried_auth = true;
                Some(Duration::from_secs(60))
            }
            429 => Some(Duration::from_secs(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(30)
                    .clamp(1, 3600),
            )),
            _ => None,
        };
        if let Some(wait) = cooldown {
            gw.cool_down(id.as_str(), wait);
            let action = if status.as_u16() == 429 {
                "gateway_cooldown"
            } else {
                "gateway_key_failing"
            };
            if let Err(e) = state
                .vault
                .record_gateway_event(
                    &format!("gateway_token:{}", view.id),
                    &view.org,
                    id,
                    action,
                    json!({ "provider": provider.id, "status": status.as_u16(), "cooldown_seconds": wait.as_secs() }),
                )
                .await
            {
                tracing::warn!(error = %e, "cannot audit a gateway key failure");
            }
            if more {
                continue;
            }
        }
        let mut out = Response::builder().status(status);
        if let Some(h) = out.headers_mut() {
            for (name, value) in response.headers() {
                if !hop_by_hop(name) {
                    h.append(name.clone(), value.clone());
                }
            }
            if let Ok(v) = HeaderValue::from_str(id.as_str()) {
                h.insert("x-keyward-credential", v);
            }
        }
        return out
            .body(Body::new(response.into_body()))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    last.unwrap_or_else(|| {
        provider_error(
            provider,
            StatusCode::BAD_GATEWAY,
            "no key of this organization could serve the request",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn joining_writes_a_shared_version_segment_once() {
        let cases = [
            (
                "https://api.openai.com/v1",
                "v1/chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "https://api.openai.com/v1/",
                "chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "https://api.anthropic.com",
                "v1/messages",
                "https://api.anthropic.com/v1/messages",
            ),
            (
                "https://openrouter.ai/api/v1",
                "v1/models",
                "https://openrouter.ai/api/v1/models",
            ),
            (
                "http://127.0.0.1:11434",
                "v1/chat/completions",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
            (
                "https://x.openai.azure.com",
                "openai/deployments/d/chat/completions",
                "https://x.openai.azure.com/openai/deployments/d/chat/completions",
            ),
            ("https://h/a/b", "a/b/c", "https://h/a/b/c"),
            ("https://h/v1", "v1", "https://h/v1"),
        ];
        for (base, path, want) in cases {
            assert_eq!(join(base, path), want, "{base} + {path}");
        }
    }
}
