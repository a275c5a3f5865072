//! The gateway token: found in whichever header the client's SDK sends it in, checked through
//! an in-process cache (or, while the store is away, a staler one), failures slowed down per
//! address, then the token's provider allow-list.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use keyward_store::{GATEWAY_TOKEN_PREFIX, GatewayTokenView, UsageSubject, VaultError};

use super::Gateway;
use super::answers::{provider_error, store_unavailable};
use super::headers::CREDENTIAL_HEADERS;
use crate::AppState;

/// How long a checked gateway token is trusted before it is looked up again (a change made
/// through this vault, or announced by another replica, ends the trust at once).
const TOKEN_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct TokenCache {
    /// The vault's token generation the entries were checked under: a revocation drops them
    /// all; other writes leave them.
    generation: u64,
    map: HashMap<String, (Arc<GatewayTokenView>, Instant)>,
}

/// The gateway token, from whichever header the client's SDK sends it in: a `kwg_` token, or
/// with `workloads` a workload's platform token (a JWT). `Authorization` takes the `Bearer`
/// scheme (any case, as RFC 9110 has it); the providers' own headers hold the token alone.
pub(super) fn gateway_token<'a>(
    provider: &Provider,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    workloads: bool,
) -> Option<&'a str> {
    let from_header = |name: &HeaderName| {
        let value = headers.get(name)?.to_str().ok()?.trim();
        if *name == header::AUTHORIZATION {
            // Deepgram's SDKs send `Token KEY`; other providers' never do.
            crate::auth::bearer(value).or_else(|| {
                let (scheme, token) = value.split_once([' ', '\t'])?;
                (provider.auth == AuthStyle::Token && scheme.eq_ignore_ascii_case("token"))
                    .then(|| token.trim())
            })
        } else {
            Some(value)
        }
    };
    CREDENTIAL_HEADERS
        .iter()
        .filter_map(from_header)
        // Gemini's REST examples pass the key as `?key=`.
        .chain(query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key="))))
        .find(|t| t.starts_with(GATEWAY_TOKEN_PREFIX) || (workloads && is_jwt(t)))
}

/// Notes the gateway token as the request's caller, for its access line.
pub(super) fn note_caller(parts: &axum::http::request::Parts, view: &GatewayTokenView) {
    crate::request_log::note_caller(
        &parts.extensions,
        format!("gateway_token:{}", view.id),
        Some(view.org.as_str()),
    );
}

/// Whether a presented token has a JWT's shape (three base64url parts, a JSON header).
pub(super) fn is_jwt(t: &str) -> bool {
    t.starts_with("eyJ")
        && t.split('.').count() == 3
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Gateway {
    /// A token checked within the last second and still valid, without touching the database.
    fn cached_token(&self, state: &AppState, token: &str) -> Option<Arc<GatewayTokenView>> {
        let fresh_after = state.vault.serving().fresh_after();
        self.token_checked_within(state, token, TOKEN_TTL)
            .filter(|(_, at)| fresh_after.is_none_or(|after| *at > after))
            .map(|(view, _)| view)
    }

    /// A token checked less than `stale_for` ago, for when the store is away.
    fn stale_token(&self, state: &AppState, token: &str) -> Option<Arc<GatewayTokenView>> {
        self.token_checked_within(state, token, self.options.stale_for)
            .map(|(view, _)| view)
    }

    /// A token checked less than `age` ago, under the vault's current token generation (no revocation
    /// since), and not expired; with when it was checked.
    fn token_checked_within(
        &self,
        state: &AppState,
        token: &str,
        age: Duration,
    ) -> Option<(Arc<GatewayTokenView>, Instant)> {
        let cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation != state.vault.serving().token_generation() {
            return None;
        }
        let (view, at) = cache.map.get(token)?;
        let good = at.elapsed() < age
            && keyward_core::token::TokenState::of(
                None,
                view.expires_at,
                keyward_core::Millis::now(),
            )
            .is_live();
        good.then(|| (view.clone(), *at))
    }

    /// Looks a token up in the vault (after [`Gateway::cached_token`] missed) and caches the
    /// answer, unless a change raced the lookup.
    async fn lookup_token(
        &self,
        state: &AppState,
        token: &str,
    ) -> Result<Option<Arc<GatewayTokenView>>, VaultError> {
        let generation = state.vault.serving().token_generation();
        // When the check began: a change announced after that makes it stale.
        let started = Instant::now();
        let found = state
            .vault
            .serving()
            .authenticate_gateway(token)
            .await?
            .map(Arc::new);
        if state.vault.serving().token_generation() != generation {
            return Ok(found);
        }
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        // About 550 bytes a token (`cargo bench -p keyward-store --bench growth`): 100 000
        // active tokens hold about 55 MB, and stay cached.
        if cache.generation != generation || cache.map.len() >= 100_000 {
            // Something changed (a revocation, perhaps): every token is checked again.
            cache.map.clear();
            cache.generation = generation;
        }
        match &found {
            Some(view) => {
                cache.map.insert(token.to_owned(), (view.clone(), started));
            }
            None => {
                cache.map.remove(token);
            }
        }
        Ok(found)
    }
}
/// Checks the client's gateway token: its view, or the answer to give (in `provider`'s shape).
/// An address that keeps presenting bad tokens is slowed down like one guessing API tokens
/// (after 10 failures in a minute its checks share a narrow lane and the ones that fail get
/// 429 until the minute is over; tokens that check out still pass), and each failure under the
/// allowance is audited.
pub(super) async fn authenticate(
    state: &AppState,
    provider: &'static Provider,
    parts: &axum::http::request::Parts,
) -> Result<Arc<GatewayTokenView>, Response> {
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::ClientAddr>>()
        .map(|c| c.0.0.ip());
    let workloads = &state.shared.workloads;
    let token = gateway_token(
        provider,
        &parts.headers,
        parts.uri.query(),
        workloads.serves_gateway(),
    );
    // A workload's platform token is checked against its issuer's keys (no store needed);
    // what its rule allows stands in for a gateway token's settings.
    if let Some(t) = token.filter(|t| is_jwt(t))
        && let Some(view) = workloads.gateway_use(t).await
    {
        return Ok(Arc::new(view));
    }
    // A token already checked passes whatever its address has been up to.
    if let Some(view) = token.and_then(|t| state.shared.gateway.cached_token(state, t)) {
        return Ok(view);
    }
    // While the store is away, a token checked not too long ago still passes; any other gets
    // a fast 503 (not a 401: it may be perfectly good) without waiting for a connection.
    if let Some(token) = token
        && !state.vault.serving().store_available()
    {
        return state
            .shared
            .gateway
            .stale_token(state, token)
            .ok_or_else(|| {
                store_unavailable(
                    provider,
                    "the gateway cannot check this token while its store is unavailable",
                )
            });
    }
    let (found, over_limit) = state
        .shared
        .limiter
        .screened(
            ip,
            async {
                match token {
                    None => Ok(None),
                    Some(token) => state
                        .shared
                        .gateway
                        .lookup_token(state, token)
                        .await
                        .map(Some),
                }
            },
            |found| matches!(found, Ok(None | Some(None))),
        )
        .await;
    let found = match (found, token) {
        (Ok(found), _) => found,
        (Err(e), Some(token)) if e.is_unavailable() => {
            return state
                .shared
                .gateway
                .stale_token(state, token)
                .ok_or_else(|| {
                    store_unavailable(
                        provider,
                        "the gateway cannot check this token while its store is unavailable",
                    )
                });
        }
        (Err(e), _) => {
            tracing::error!(error = %e, "gateway token lookup failed");
            return Err(provider_error(
                provider,
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway cannot check tokens right now",
            ));
        }
    };
    if let Some(Some(view)) = found {
        return Ok(view);
    }
    let why = if found.is_some() {
        "unknown, revoked or expired gateway token"
    } else {
        "a Keyward gateway token (kwg_...) is required"
    };
    let within = ip.is_none_or(|ip| state.shared.limiter.failed(ip));
    if let Some(retry) = over_limit {
        let mut r = provider_error(
            provider,
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed gateway token checks from this address",
        );
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        // The token is bad; trying it again changes nothing.
        r.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
        return Err(r);
    }
    // Beyond the allowance a failure is answered, not audited again.
    if within {
        let vault = state.vault.serving().clone();
        let from = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        tokio::spawn(async move {
            if let Err(e) = vault.record_auth_failure(&from, "gateway", why).await {
                tracing::warn!(error = %e, "cannot audit a failed gateway authentication");
            }
        });
    }
    Err(provider_error(provider, StatusCode::UNAUTHORIZED, why))
}

/// Whether the token's request may go to `provider` (its provider allow-list; its per-minute
/// limits are budgets, `allowance`). `Some` is the refusal to answer with.
pub(super) fn refusal(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
) -> Option<Response> {
    let gw = &state.shared.gateway;
    if view.allows(provider) {
        return None;
    }
    let refused = provider_error(
        provider,
        StatusCode::FORBIDDEN,
        &format!("this gateway token may not use {}", provider.id),
    );
    gw.usage.record(
        UsageSubject::GatewayToken,
        &view.id,
        &view.org,
        provider.id,
        refused.status().as_u16(),
    );
    Some(refused)
}
