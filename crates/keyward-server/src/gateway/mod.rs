//! The gateway: `ANY /gateway/{provider}/{path...}` forwards an LLM request to the provider with
//! the organization's key in place of the client's gateway token, streaming both ways;
//! `ANY /gateway/t/{target}/{path...}` does the same for a static target of the config file.
//!
//! The hot path reads no database in the common case: gateway tokens and resolutions come from
//! in-process caches, and usage is counted in memory and written in batches (`usage`).
//!
//! This module holds the settings, the shared state and the two routes; each step of a request
//! is a module of its own, in the order a request meets them:
//!
//! - `screen`: what is refused before the token is looked up (with `guard`: the methods and
//!   paths a gateway token may use).
//! - `token`: the gateway token, its cache, and its provider allow-list and per-minute limit.
//! - `candidates`: the organization's keys (or the server's environment), or a static target.
//! - `cooldown`: keys set aside after a 401/403 or a 429, tried last, and their recovery.
//! - `upstream`: the request sent to each candidate in turn, failing over between keys.
//! - `headers`: the headers that stay behind, the provider's auth header, the key masked.
//! - `relay`: the upstream's answer as the client gets it.
//! - `body`: the client's body (limited, its faults told apart), the idle timeout and the
//!   masking of the key on the upstream's answer.
//! - `answers`: the gateway's own answers, in the provider's error shape.
//! - `cloud`: credentials exchanged for access tokens (Vertex AI, Entra ID) or signing each
//!   request (Bedrock's SigV4), and Vertex's paths.
//! - `realtime`: WebSocket sessions on the realtime routes, pumped both ways.
//!
//! And beside the requests: `targets` (the static targets file), `key_ref` (its references to
//! keys: a config variable, the environment, Vault KV) and `reload` (loading it),
//! `usage` (the usage counters) and `metrics` (the gateway's other counters).

use tracing::Instrument as _;

mod allowance;
mod answers;
pub(crate) mod audit_policy;
mod body;
pub(crate) mod budgets;
mod candidates;
mod cloud;
mod cooldown;
mod guard;
mod headers;
mod key_ref;
mod meter;
mod metrics;
mod realtime;
mod relay;
mod reload;
mod screen;
mod targets;
mod token;
mod upstream;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::{CredentialId, PROVIDERS, Provider};
use serde_json::json;

use crate::AppState;
pub(crate) use allowance::send_alerts;
use answers::provider_error;
use candidates::{Served, Upstream};
use cooldown::Trouble;
pub use reload::{LoadRecord, LoadTrigger};
use screen::screen;
use targets::Targets;
pub use targets::{TargetSummary, TargetsError, TargetsLoaded, check_targets_file};
use token::{TokenCache, authenticate, refusal};
use upstream::proxy;
pub(crate) use usage::UsageCounter;

/// Largest request body forwarded.
const MAX_BODY: usize = 10 * 1024 * 1024;

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Longest wait for a connection to the provider.
    pub connect_timeout: Duration,
    /// Longest wait for the provider's response headers, once the request is sent.
    pub first_byte_timeout: Duration,
    /// Longest silence within the provider's response body (a stalled stream is closed).
    pub idle_timeout: Duration,
    /// How often counted usage is written to the vault.
    pub usage_flush_interval: Duration,
    /// The static targets file, if any.
    pub targets_file: Option<PathBuf>,
    /// While the store is away, how long tokens and keys checked before are still served
    /// (zero: not at all). Tokens and keys never seen get a fast 503 meanwhile.
    pub stale_for: Duration,
    /// Reads targets' `secret_key_ref: {vault: ...}` keys. The default is made from this
    /// process's environment (`VAULT_ADDR` and `VAULT_TOKEN`, or `KEYWARD_KMS`'s `transit:`
    /// settings) at the first such reference, and kept for later reloads.
    pub vault_kv: Arc<keyward_kms::kv::LazyKvReader>,
    /// Whether `/metrics` names organizations in its spend counters (off: `/metrics` is open
    /// to anyone who reaches the server, and one organization's spend is none of another's
    /// business).
    pub metrics_by_org: bool,
    /// How long a realtime (WebSocket) session may pass no message either way.
    pub realtime_idle_timeout: Duration,
    /// How long a realtime session may last.
    pub realtime_max_duration: Duration,
    /// Where Vertex AI's and Entra ID's access tokens are asked for (Google's and
    /// Microsoft's public endpoints by default): the server's setting, never a credential's.
    pub token_endpoints: keyward_probe::cloud::TokenEndpoints,
    /// The audit-logger policy of the server's own settings (`--audit-*`); the targets file's
    /// adds to it (the stricter of the two is in force).
    pub audit_policy: keyward_store::AuditPolicy,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            usage_flush_interval: Duration::from_secs(1),
            targets_file: None,
            stale_for: Duration::from_secs(300),
            vault_kv: Arc::new(keyward_kms::kv::LazyKvReader::new(keyward_kms::process_env)),
            metrics_by_org: false,
            token_endpoints: keyward_probe::cloud::TokenEndpoints::default(),
            realtime_idle_timeout: Duration::from_secs(300),
            realtime_max_duration: Duration::from_secs(3600),
            audit_policy: keyward_store::AuditPolicy::default(),
        }
    }
}

/// The operator's prices' count and latest import, to tell whether to read them again.
type PricesVersion = (i64, i64);

/// The gateway's shared parts: the upstream client, the token cache, the rate counters, the
/// health of credentials, the static targets and the counters.
pub(crate) struct Gateway {
    client: HttpsClient,
    options: GatewayOptions,
    tokens: Mutex<TokenCache>,
    /// Budgets and limits, held across replicas by leases.
    pub(crate) budgets: budgets::Budgets,
    /// Credentials set aside until the instant given; an entry stays after it expires until the
    /// credential serves a request again, which is then recorded as its recovery.
    cooling: Mutex<HashMap<CredentialId, (Instant, Trouble)>>,
    targets: RwLock<Arc<Targets>>,
    /// The last load of the targets file (started, SIGHUP, API, CLI) and what came of it,
    /// and the last one that succeeded (what is being served).
    last_load: Mutex<(Option<LoadRecord>, Option<LoadRecord>)>,
    /// When each (organization, provider) was last audited as served from the environment.
    env_served: Mutex<HashMap<(keyward_core::OrgId, &'static str), Instant>>,
    reloading: tokio::sync::Mutex<()>,
    pub(crate) usage: UsageCounter,
    /// Access tokens minted from service accounts and Entra ID apps.
    access: cloud::AccessTokens,
    /// What tokens cost: the shipped prices with the operator's on top, and the version of
    /// the operator's (their count and latest import) they were read at.
    prices: RwLock<(Arc<keyward_core::prices::Prices>, Option<PricesVersion>)>,
    /// (metric, provider, reason) counts.
    events: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    /// The audit-logger policy in force, and the request events it asks for.
    audit: audit_policy::PolicyState,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new(GatewayOptions::default())
    }
}

impl Gateway {
    pub(crate) fn new(options: GatewayOptions) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // hyper's own client: the request body passes through as it came, with no conversion,
        // and a hyper client never follows redirects (they go back to the client as they are,
        // so the key is never sent on).
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_connect_timeout(Some(options.connect_timeout));
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
            access: cloud::AccessTokens::new(options.token_endpoints.clone()),
            options,
            tokens: Mutex::default(),
            budgets: budgets::Budgets::default(),
            cooling: Mutex::default(),
            targets: RwLock::default(),
            last_load: Mutex::default(),
            env_served: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
            usage: UsageCounter::default(),
            prices: RwLock::new((
                Arc::new(keyward_core::prices::Prices::new(
                    keyward_core::prices::shipped(),
                )),
                None,
            )),
            events: Mutex::default(),
            audit: audit_policy::PolicyState::default(),
        }
    }

    pub(crate) fn options(&self) -> &GatewayOptions {
        &self.options
    }

    /// The price table answers are priced with.
    pub(crate) fn prices(&self) -> Arc<keyward_core::prices::Prices> {
        self.prices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reads the operator's prices again if they changed since they were last read (`force`:
    /// whatever their version says).
    pub(crate) async fn refresh_prices(
        &self,
        vault: &keyward_store::Vault,
        force: bool,
    ) -> Result<(), keyward_store::VaultError> {
        let version = vault.prices_version().await?;
        let current = self.prices.read().unwrap_or_else(|p| p.into_inner()).1;
        if !force && current == Some(version) {
            return Ok(());
        }
        let mine = vault.model_prices().await?;
        let table = keyward_core::prices::Prices::new(
            keyward_core::prices::shipped().into_iter().chain(mine),
        );
        *self.prices.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(table), Some(version));
        Ok(())
    }
}

/// `ANY /gateway/{provider}/{*path}`.
pub(crate) async fn forward(State(state): State<AppState>, req: Request) -> Response {
    // The segment as written (not decoded: `Path` would answer a bad escape in plain text).
    let provider_id = raw_tail(req.uri().path(), 1)
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let Ok(provider) = Provider::get(&provider_id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "error": { "message": format!("unknown provider {}", keyward_core::secret_like::shown(&provider_id)) } }),
            ),
        )
            .into_response();
    };
    let (parts, body) = req.into_parts();
    if parts.method == axum::http::Method::GET && realtime::is_upgrade(&parts) {
        return realtime::forward(&state, provider, parts, 2).await;
    }
    if let Some(r) = screen(provider, &parts, 2) {
        return r;
    }
    let view = match authenticate(&state, provider, &parts)
        .instrument(tracing::info_span!(
            "gateway.token",
            keyward.provider = provider.id
        ))
        .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    token::note_caller(&parts, &view);
    if let Some(r) = refusal(&state, provider, &view) {
        return r;
    }
    let mut parts = parts;
    let (body, admitted) = match allowed(&state, provider, &view, &mut parts, body, 2).await {
        Ok(b) => b,
        Err(r) => return r,
    };

    // The organization's keys, in its strategy's order, from the resolution cache; keys
    // cooling down go last.
    let candidates = match candidates::lookup(&state, provider, &view)
        .instrument(tracing::info_span!(
            "gateway.resolve",
            keyward.provider = provider.id,
            keyward.org = %view.org
        ))
        .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut upstreams = candidates::upstreams(&state, provider, &view, &candidates);
    state.shared.gateway.order_by_health(&mut upstreams);
    proxy(&state, provider, &view, upstreams, parts, body, 2, admitted).await
}

/// What a request let through carries to its answer.
pub(super) struct Admitted {
    /// Its holds on budgets and limits.
    pub(super) ticket: budgets::Ticket,
    /// The gateway asked for the stream's usage, and hides the chunk that brings it.
    pub(super) hide_usage_chunk: bool,
}

/// What must hold before any provider is contacted, past the token's own provider allow-list:
/// the model its allow-list names, and room in every budget and limit the request falls
/// under. The body (read if the model had to be looked for in it, or to ask for a stream's
/// usage), and what the request carries on.
async fn allowed(
    state: &AppState,
    provider: &'static Provider,
    view: &keyward_store::GatewayTokenView,
    parts: &mut axum::http::request::Parts,
    body: Body,
    skip: usize,
) -> Result<(Body, Admitted), Response> {
    let path = raw_tail(parts.uri.path(), skip);
    let mut body = allowance::check_model(provider, view, &parts.method, path, body).await?;
    let mut hide_usage_chunk = false;
    if allowance::asks_for_usage(provider, &parts.method, path) {
        let bytes = allowance::read_body(provider, body).await?;
        body = match allowance::with_usage_asked(&bytes) {
            Some(asked) => {
                hide_usage_chunk = true;
                parts.headers.remove(axum::http::header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(axum::http::header::CONTENT_LENGTH, asked.len().into());
                Body::from(asked)
            }
            None => Body::from(bytes),
        };
    }
    let mut ticket = budgets::Ticket::default();
    let Some(limits) = state.shared.gateway.budgets.for_token(view) else {
        return Err(answers::store_unavailable(
            provider,
            "the gateway has not read its budgets yet: its store is unavailable",
        ));
    };
    allowance::admit(state, provider, view, &limits, &mut ticket).await?;
    Ok((
        body,
        Admitted {
            ticket,
            hide_usage_chunk,
        },
    ))
}

/// `ANY /gateway/t/{target}/{*path}`: a static target of the config file.
pub(crate) async fn forward_target(State(state): State<AppState>, req: Request) -> Response {
    let target_id = raw_tail(req.uri().path(), 2)
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let targets = state.shared.gateway.targets();
    let target = targets.by_id.get(&target_id).cloned();
    // Until the token is known to be of the target's organization, answers do not depend on
    // the target (whether it exists, its provider): they take OpenAI's shape, which is what
    // most SDKs speak.
    let shape = &PROVIDERS[0];
    let (parts, body) = req.into_parts();
    if let Some(r) = screen(shape, &parts, 3) {
        return r;
    }
    let view = match authenticate(&state, shape, &parts)
        .instrument(tracing::info_span!(
            "gateway.token",
            keyward.target = if targets.by_id.contains_key(&target_id) {
                target_id.as_str()
            } else {
                "(unknown)"
            }
        ))
        .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    token::note_caller(&parts, &view);
    // Another organization's target does not exist, as far as this token can tell.
    let Some(target) = target.filter(|t| t.org == view.org) else {
        return provider_error(
            shape,
            StatusCode::NOT_FOUND,
            &format!(
                "unknown gateway target {}",
                keyward_core::secret_like::shown(&target_id)
            ),
        );
    };
    let provider = target.provider;
    if let Some(r) = refusal(&state, provider, &view) {
        return r;
    }
    let mut parts = parts;
    let (body, admitted) = match allowed(&state, provider, &view, &mut parts, body, 3).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let upstream = Upstream {
        base: &target.base_url,
        key: target.key.as_ref(),
        fields: None,
        served: Served::Target(&target),
    };
    proxy(
        &state,
        provider,
        &view,
        vec![upstream],
        parts,
        body,
        3,
        admitted,
    )
    .await
}

/// `path` without its leading slash and its first `skip` segments.
fn raw_tail(path: &str, skip: usize) -> &str {
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    for _ in 0..skip {
        rest = rest.split_once('/').map_or("", |(_, r)| r);
    }
    rest
}
