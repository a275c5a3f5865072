//! The gateway: `ANY /gateway/{provider}/{path...}` forwards an LLM request to the provider with
//! the organization's key in place of the client's gateway token, streaming both ways;
//! `ANY /gateway/t/{target}/{path...}` does the same for a static target of the config file.
//!
//! The hot path reads no database in the common case: gateway tokens and resolutions come from
//! in-process caches, and usage is counted in memory and written in batches (`usage`).
//!
//! - `body`: the client's body (limited, its faults told apart), the idle timeout and the
//!   masking of the key on the upstream's answer.
//! - `guard`: the methods and paths a gateway token may use.
//! - `targets`: the static targets file.
//! - `usage`: the usage counters.

mod body;
mod guard;
mod targets;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_core::audit::Outcome;
use keyward_core::provider::AuthStyle;
use keyward_core::{CredentialId, PROVIDERS, Provider};
use keyward_store::{
    CandidateSource, GATEWAY_TOKEN_PREFIX, GatewayTokenView, UsageSubject, VaultError,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::AppState;
use targets::Targets;
pub use targets::{TargetSummary, TargetsError, TargetsLoaded};
pub(crate) use usage::UsageCounter;

/// Largest request body forwarded.
const MAX_BODY: usize = 10 * 1024 * 1024;
/// How long a checked gateway token is trusted before it is looked up again (a change made
/// through this vault, or announced by another replica, ends the trust at once).
const TOKEN_TTL: Duration = Duration::from_secs(1);
/// How long a key the provider refused (401/403) is set aside.
const FAILING_COOLDOWN: Duration = Duration::from_secs(60);

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
        }
    }
}

/// Why a credential is set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The provider refused it (401/403).
    Failing,
    /// The provider rate-limited it (429).
    RateLimited,
}

impl Trouble {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trouble::Failing => "failing",
            Trouble::RateLimited => "rate_limited",
        }
    }
}

/// What started a load of the targets file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LoadTrigger {
    /// `keyward serve` starting.
    Start,
    /// SIGHUP to the server.
    Sighup,
    /// `POST /api/v1/gateway/reload`.
    Api,
    /// `keyward gateway reload` (through the API).
    Cli,
    /// The web console's Reload button.
    Console,
}

impl LoadTrigger {
    /// Its name in audit entries and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadTrigger::Start => "start",
            LoadTrigger::Sighup => "sighup",
            LoadTrigger::Api => "api",
            LoadTrigger::Cli => "cli",
            LoadTrigger::Console => "console",
        }
    }
}

/// The last load of the targets file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LoadRecord {
    /// When.
    pub at: keyward_core::Millis,
    /// What started it.
    pub by: LoadTrigger,
    /// Why it failed (the previous targets stayed), if it did.
    pub error: Option<String>,
}

/// The gateway's shared parts: the upstream client, the token cache, the rate counters, the
/// health of credentials, the static targets and the counters.
pub(crate) struct Gateway {
    client: HttpsClient,
    options: GatewayOptions,
    tokens: Mutex<TokenCache>,
    windows: Mutex<HashMap<String, (Instant, i64)>>,
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
    /// (metric, provider, reason) counts.
    events: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
}

#[derive(Default)]
struct TokenCache {
    /// The vault's token generation the entries were checked under: a revocation drops them
    /// all; other writes leave them.
    generation: u64,
    map: HashMap<String, (Arc<GatewayTokenView>, Instant)>,
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
            options,
            tokens: Mutex::default(),
            windows: Mutex::default(),
            cooling: Mutex::default(),
            targets: RwLock::default(),
            last_load: Mutex::default(),
            env_served: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
            usage: UsageCounter::default(),
            events: Mutex::default(),
        }
    }

    pub(crate) fn options(&self) -> &GatewayOptions {
        &self.options
    }

    fn count(&self, metric: &'static str, provider: &'static str, reason: &'static str) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        *events.entry((metric, provider, reason)).or_default() += 1;
    }

    /// The static targets in use.
    fn targets(&self) -> Arc<Targets> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// (Re)loads the static targets file; on failure the running set stays. Every load is
    /// audited (`gateway_reload`, naming the references it resolved, never a value) and kept
    /// as the last one for the status.
    pub(crate) async fn reload_targets(
        &self,
        vault: &keyward_store::Vault,
        by: LoadTrigger,
        actor: &str,
    ) -> Result<TargetsLoaded, TargetsError> {
        let Some(path) = self.options.targets_file.clone() else {
            return Err(TargetsError::NoFile);
        };
        let _one_at_a_time = self.reloading.lock().await;
        let env = |name: &str| std::env::var(name).ok();
        let outcome = Targets::load(&path, vault, &env).await.map(|loaded| {
            let report = loaded.loaded();
            *self.targets.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
            report
        });
        let (outcome_kind, details) = match &outcome {
            Ok(report) => {
                self.count("reloads", "", "ok");
                tracing::info!(targets = report.targets.len(), by = by.as_str(), file = %path.display(), "gateway targets loaded");
                if !report.ignored.is_empty() {
                    tracing::warn!(sections = %report.ignored.join(", "), "gateway config: sections Keyward does not implement are ignored");
                }
                (
                    Outcome::Success,
                    json!({ "by": by.as_str(), "targets": report.targets, "ignored": report.ignored }),
                )
            }
            Err(e) => {
                self.count("reloads", "", "failed");
                if by == LoadTrigger::Start {
                    tracing::error!(error = %e, "gateway targets not loaded");
                } else {
                    tracing::error!(error = %e, "gateway targets not reloaded; the previous ones stay");
                }
                (
                    Outcome::Failure,
                    json!({ "by": by.as_str(), "error": e.to_string() }),
                )
            }
        };
        {
            let record = LoadRecord {
                at: keyward_core::Millis::now(),
                by,
                error: outcome.as_ref().err().map(ToString::to_string),
            };
            let mut loads = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
            if outcome.is_ok() {
                loads.1 = Some(record.clone());
            }
            loads.0 = Some(record);
        }
        let event = keyward_core::audit::NewEvent::new(
            actor,
            keyward_core::audit::Category::SecretManagement,
            "gateway_reload",
            "gateway:targets".to_owned(),
        )
        .outcome(outcome_kind)
        .details(details);
        if let Err(e) = vault.record(event).await {
            tracing::warn!(error = %e, "cannot audit a gateway reload");
        }
        outcome
    }

    /// Audits that the server's environment served an organization's requests to `provider`
    /// (`gateway_env_fallback`, naming the variable), at most once a minute for each pair: the
    /// gateway counts requests in aggregate, and this is what the trail needs to know.
    fn note_env_served(
        &self,
        vault: &keyward_store::Vault,
        token: &GatewayTokenView,
        provider: &'static Provider,
        variable: &str,
    ) {
        let org = &token.org;
        {
            let mut served = self.env_served.lock().unwrap_or_else(|p| p.into_inner());
            let key = (org.clone(), provider.id);
            if served
                .get(&key)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
            {
                return;
            }
            served.insert(key, Instant::now());
        }
        let event = keyward_core::audit::NewEvent::new(
            &format!("gateway_token:{}", token.id),
            keyward_core::audit::Category::SecretAccess,
            "gateway_env_fallback",
            format!("env:{variable}"),
        )
        .org(Some(org.as_str()))
        .details(json!({ "provider": provider.id, "source": "environment", "variable": variable }));
        let vault = vault.clone();
        tokio::spawn(async move {
            if let Err(e) = vault.record(event).await {
                tracing::warn!(error = %e, "cannot audit a gateway request served from the environment");
            }
        });
    }

    /// The targets served, their last load and the last successful one, for the status.
    pub(crate) fn targets_status(&self) -> (TargetsLoaded, Option<LoadRecord>, Option<LoadRecord>) {
        let (last, serving) = self
            .last_load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (self.targets().loaded(), last, serving)
    }

    /// Credentials set aside now: id, why, and for how long still.
    pub(crate) fn set_aside(&self) -> Vec<(CredentialId, Trouble, Duration)> {
        let now = Instant::now();
        let cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        cooling
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(id, (until, why))| (id.clone(), *why, *until - now))
            .collect()
    }

    /// The Prometheus lines of the gateway.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let families = [
            (
                "failovers",
                "keyward_gateway_failovers_total",
                "Requests sent on to the next key, by provider and reason.",
            ),
            (
                "cooldowns",
                "keyward_gateway_cooldowns_total",
                "Keys set aside, by provider and reason (failing: 401/403, rate_limited: 429).",
            ),
            (
                "recoveries",
                "keyward_gateway_recoveries_total",
                "Keys that served again after being set aside, by provider.",
            ),
        ];
        for (metric, name, help) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((m, provider, reason), n) in &events {
                if *m == metric {
                    let _ = writeln!(
                        out,
                        "{name}{{provider=\"{provider}\",reason=\"{reason}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP keyward_gateway_target_reloads_total Loads of the static targets file, by outcome.\n# TYPE keyward_gateway_target_reloads_total counter\n");
        for ((m, _, outcome), n) in &events {
            if *m == "reloads" {
                let _ = writeln!(
                    out,
                    "keyward_gateway_target_reloads_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let targets = self.targets().by_id.len();
        let _ = writeln!(
            out,
            "# HELP keyward_gateway_targets Static targets loaded.\n# TYPE keyward_gateway_targets gauge\nkeyward_gateway_targets {targets}"
        );
        self.usage.render(out);
    }
}

/// Errors answered in the shape the provider's SDKs parse.
/// The message is scrubbed like the API's details (it may name what the client sent).
fn provider_error(provider: &Provider, status: StatusCode, message: &str) -> Response {
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
        AuthStyle::GoogApiKey => json!({
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
fn no_key(provider: &Provider, missing: &keyward_core::resolve::NotFound) -> Response {
    let message = format!("Keyward gateway: {missing}");
    let mut r = provider_error(provider, StatusCode::FORBIDDEN, &message);
    if !matches!(provider.auth, AuthStyle::XApiKey | AuthStyle::GoogApiKey) {
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

/// The gateway token, from whichever header the client's SDK sends it in.
/// `Authorization` takes the `Bearer` scheme (any case, as RFC 9110 has it); the providers' own
/// headers hold the token alone.
fn gateway_token<'a>(
    provider: &Provider,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
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

/// Headers that describe one connection, not the message, and are never forwarded (hyper
/// writes `content-length` and `transfer-encoding` again from the body it sends).
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// Headers that ask a server to take a request for another method.
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Headers that may carry a key: the client's never reach the upstream.
const CREDENTIAL_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("xi-api-key"),
];

/// Removes the hop-by-hop headers: the fixed list, and any the `Connection` header names
/// (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// What replaces `key` with its hint.
fn masker(provider: &Provider, key: &SecretString) -> keyward_core::mask::Masker {
    let hint = keyward_core::credential::key_hint(provider, key);
    keyward_core::mask::Masker::new([(key.expose_secret().as_bytes(), hint.as_str())])
}

/// Replaces `key` with its hint in every header value that holds it (the masker is built only
/// then: the common answer quotes nothing).
fn mask_headers(headers: &mut HeaderMap, provider: &Provider, key: &SecretString) {
    // Header names are lower case: a key made into a name is found lower-cased (only names
    // long enough to hold it are looked at).
    let secret = key.expose_secret();
    if headers.keys().any(|n| n.as_str().len() >= secret.len()) {
        let lower = secret.to_ascii_lowercase();
        let in_name = memchr::memmem::Finder::new(lower.as_bytes());
        let named: Vec<HeaderName> = headers
            .keys()
            .filter(|n| in_name.find(n.as_str().as_bytes()).is_some())
            .cloned()
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // Only a value at least as long as the key can hold it; the common answer has none, and
    // then no searcher is built at all.
    let mut finder = None;
    let mut masker_once = None;
    for value in headers.values_mut() {
        if value.len() < secret.len() {
            continue;
        }
        let finder = finder.get_or_insert_with(|| memchr::memmem::Finder::new(secret.as_bytes()));
        if finder.find(value.as_bytes()).is_none() {
            continue;
        }
        let masker = masker_once.get_or_insert_with(|| masker(provider, key));
        // A hint is printable ASCII, so the masked value is still a header value; if it were
        // not, the header would go out empty rather than with the key.
        let masked = masker
            .mask_whole(value.as_bytes())
            .and_then(|m| HeaderValue::from_bytes(&m).ok())
            .unwrap_or_else(|| HeaderValue::from_static(""));
        *value = masked;
    }
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

    /// Sets a credential aside for `wait`; true if that is news (it was not already set aside
    /// for the same reason), which is when it is worth an audit event.
    fn cool_down(&self, credential: &CredentialId, wait: Duration, why: Trouble) -> bool {
        let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let before = cooling.insert(credential.clone(), (now + wait, why));
        !matches!(before, Some((until, was)) if until > now && was == why)
    }

    /// Whether a credential that just served had been set aside: if so, it has recovered.
    fn recovered(&self, credential: &CredentialId) -> Option<Trouble> {
        let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        if cooling.is_empty() {
            return None;
        }
        cooling.remove(credential).map(|(_, why)| why)
    }

    /// Moves credentials that are cooling down behind the others (keeping each group's order).
    fn order_by_health(&self, candidates: &mut [Upstream<'_>]) {
        let cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        if cooling.is_empty() {
            return;
        }
        let now = Instant::now();
        candidates.sort_by_key(|c| match &c.served {
            Served::Credential(id) => cooling.get(*id).is_some_and(|(until, _)| *until > now),
            Served::Target(_) | Served::Environment(_) => false,
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

/// What served a request: a credential of the vault, or a static target.
#[derive(Debug, Clone, Copy)]
enum Served<'a> {
    Credential(&'a CredentialId),
    Target(&'a targets::Target),
    /// The server's environment variable of this name (the organization's fallback is on).
    Environment(&'a str),
}

/// One place to send the request to, borrowed from the resolution cache or the targets.
struct Upstream<'a> {
    served: Served<'a>,
    base: &'a str,
    key: Option<&'a SecretString>,
}

/// Checks the client's gateway token: its view, or the answer to give (in `provider`'s shape).
/// An address that keeps presenting bad tokens is slowed down like one guessing API tokens
/// (after 10 failures in a minute its checks share a narrow lane and the ones that fail get
/// 429 until the minute is over; tokens that check out still pass), and each failure under the
/// allowance is audited.
async fn authenticate(
    state: &AppState,
    provider: &'static Provider,
    parts: &axum::http::request::Parts,
) -> Result<Arc<GatewayTokenView>, Response> {
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::ClientAddr>>()
        .map(|c| c.0.0.ip());
    let token = gateway_token(provider, &parts.headers, parts.uri.query());
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

/// Whether the token's request may go to `provider`: its provider allow-list, then its
/// per-minute window (counted only here, once the request is one it may make). `Some` is the
/// refusal to answer with.
fn refusal(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
) -> Option<Response> {
    let gw = &state.shared.gateway;
    let refused = if !view.allows(provider) {
        provider_error(
            provider,
            StatusCode::FORBIDDEN,
            &format!("this gateway token may not use {}", provider.id),
        )
    } else if !gw.within_rate(view) {
        let mut r = provider_error(
            provider,
            StatusCode::TOO_MANY_REQUESTS,
            "this gateway token's requests-per-minute limit is reached",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        r
    } else {
        return None;
    };
    gw.usage.record(
        UsageSubject::GatewayToken,
        &view.id,
        &view.org,
        provider.id,
        refused.status().as_u16(),
    );
    Some(refused)
}

/// Refuses providers whose requests need signing, which the gateway does not do.
fn unsupported(provider: &Provider) -> Option<Response> {
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
fn screen(
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

/// 503 with Retry-After: the store is away, try again shortly.
fn store_unavailable(provider: &Provider, message: &str) -> Response {
    let mut r = provider_error(provider, StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn too_large(provider: &Provider) -> Response {
    provider_error(
        provider,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is too large (the limit is 10 MiB)",
    )
}

/// The answer to a client whose body failed: too large, or else unreadable.
fn body_fault_answer(provider: &Provider, fault: Option<body::BodyFault>) -> Response {
    match fault {
        Some(body::BodyFault::TooLarge) => too_large(provider),
        _ => provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            "the request body could not be read (a malformed chunked encoding, or a cut connection)",
        ),
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
    if let Some(r) = unsupported(provider) {
        return r;
    }
    let (parts, body) = req.into_parts();
    if let Some(r) = screen(provider, &parts, 2) {
        return r;
    }
    let view = match authenticate(&state, provider, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = refusal(&state, provider, &view) {
        return r;
    }

    // The organization's keys, in its strategy's order, from the resolution cache; keys
    // cooling down go last.
    let stale_for = state.shared.gateway.options().stale_for;
    let candidates = match state
        .vault
        .serving()
        .gateway_candidates(&view.org, provider, stale_for, state.env_fallback())
        .await
    {
        Ok(c) => c,
        Err(VaultError::NoCredential(e)) => {
            let r = no_key(provider, &e);
            state.shared.gateway.usage.record(
                UsageSubject::GatewayToken,
                &view.id,
                &view.org,
                provider.id,
                r.status().as_u16(),
            );
            return r;
        }
        Err(e) if e.is_unavailable() => {
            return store_unavailable(
                provider,
                "the gateway cannot find this organization's keys while its store is unavailable",
            );
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
    let mut upstreams: Vec<Upstream<'_>> = candidates
        .iter()
        .filter_map(|c| {
            Some(Upstream {
                served: match c.source {
                    CandidateSource::Credential(id) => Served::Credential(id),
                    CandidateSource::Environment(var) => Served::Environment(var),
                },
                base: c.base_url?,
                key: c.secret,
            })
        })
        .collect();
    for up in &upstreams {
        if let Served::Environment(var) = up.served {
            state
                .shared
                .gateway
                .note_env_served(state.vault.serving(), &view, provider, var);
        }
    }
    state.shared.gateway.order_by_health(&mut upstreams);
    proxy(&state, provider, &view, upstreams, parts, body, 2).await
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
    let view = match authenticate(&state, shape, &parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
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
    let upstream = Upstream {
        base: &target.base_url,
        key: target.key.as_ref(),
        served: Served::Target(&target),
    };
    proxy(&state, provider, &view, vec![upstream], parts, body, 3).await
}

/// `path` without its leading slash and its first `skip` segments.
fn raw_tail(path: &str, skip: usize) -> &str {
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    for _ in 0..skip {
        rest = rest.split_once('/').map_or("", |(_, r)| r);
    }
    rest
}

/// The provider's auth header for `key`.
/// `Err` when the key cannot be a header value (a stray newline, say).
fn auth_header(provider: &Provider, key: &SecretString) -> Result<(HeaderName, HeaderValue), ()> {
    let (name, value) = match provider.auth {
        AuthStyle::XApiKey => (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::GoogApiKey => (
            HeaderName::from_static("x-goog-api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::ApiKeyHeader => (
            HeaderName::from_static("api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::XiApiKey => (
            HeaderName::from_static("xi-api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::Token => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Token {}", key.expose_secret())),
        ),
        // A provider that needs no key (a local Ollama) but was given one gets it the way
        // OpenAI-compatible servers take it. Signed providers never get here (`unsupported`).
        AuthStyle::Bearer | AuthStyle::None | AuthStyle::ServiceAccount | AuthStyle::AwsSigV4 => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())),
        ),
    };
    let mut value = value.map_err(|_| ())?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// [`try_upstreams`], counted against the gateway token with the status its client gets.
async fn proxy(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
    upstreams: Vec<Upstream<'_>>,
    parts: axum::http::request::Parts,
    body: Body,
    skip: usize,
) -> Response {
    let response = try_upstreams(state, provider, view, upstreams, parts, body, skip).await;
    state.shared.gateway.usage.record(
        UsageSubject::GatewayToken,
        &view.id,
        &view.org,
        provider.id,
        response.status().as_u16(),
    );
    response
}

/// Sends the request to each upstream in turn until one answers: on 401/403 the key is marked
/// failing and the request goes once more to the next; on 429 the key cools down for
/// Retry-After and the next is tried; when no connection can be made the next is tried.
async fn try_upstreams(
    state: &AppState,
    provider: &'static Provider,
    view: &GatewayTokenView,
    upstreams: Vec<Upstream<'_>>,
    parts: axum::http::request::Parts,
    body: Body,
    skip: usize,
) -> Response {
    let gw = &state.shared.gateway;
    let options = gw.options();

    // The request's headers, less connection-level ones and any key; the query, less `key=`.
    let mut parts = parts;
    // The path as the client sent it, percent-escapes and all, after the route's own segments
    // (`gateway/{provider}` or `gateway/t/{target}`): decoding it would change what it means.
    let path = raw_tail(parts.uri.path(), skip);
    let presented = gateway_token(provider, &parts.headers, parts.uri.query()).map(str::to_owned);
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    // Method overrides would make a POST a TRACE or a PROPFIND to servers that honour them.
    for name in CREDENTIAL_HEADERS.iter().chain(&METHOD_OVERRIDES) {
        headers.remove(name);
    }
    // No gateway token goes further, wherever else the client put one (a cookie, a header of
    // its own): not the one presented, nor any other (another organization's, say).
    let carrying: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| {
            v.to_str()
                .is_ok_and(|v| guard::holds(v, GATEWAY_TOKEN_PREFIX))
                || presented
                    .as_deref()
                    .is_some_and(|t| memchr::memmem::find(v.as_bytes(), t.as_bytes()).is_some())
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in carrying {
        headers.remove(name);
    }
    // Answers are checked for the key before the client sees them, which a compressed body
    // would defeat: the provider is asked for none.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // `Expect: 100-continue` was between the client and us (hyper answered it when the body
    // was first read); the provider gets the body at once.
    headers.remove(header::EXPECT);
    let query: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| {
            !kv.is_empty() && !kv.starts_with("key=") && !guard::holds(kv, GATEWAY_TOKEN_PREFIX)
        })
        .collect();
    if presented.as_deref().is_some_and(|t| guard::holds(path, t)) {
        return provider_error(
            provider,
            StatusCode::BAD_REQUEST,
            "the request path holds the gateway token; send it only in the auth header",
        );
    }

    // The body streams through when there is one key to try; with several, it is kept
    // (bounded) so that it can be sent again to the next one.
    let mut streamed = Some(body::client_body(body, MAX_BODY));
    let kept: Option<bytes::Bytes> = if upstreams.len() > 1 {
        match axum::body::to_bytes(streamed.take().unwrap_or_default(), usize::MAX).await {
            Ok(b) => Some(b),
            Err(e) => {
                return body_fault_answer(provider, body::body_fault(&e));
            }
        }
    } else {
        None
    };

    // Events about keys are written beside the request, not in its way (on SQLite they would
    // queue behind every other writer).
    let audit = |credential: CredentialId, action: &'static str, outcome, details| {
        let vault = state.vault.serving().clone();
        let actor = format!("gateway_token:{}", view.id);
        let org = view.org.clone();
        tokio::spawn(async move {
            if let Err(e) = vault
                .record_gateway_event(&actor, &org, &credential, action, outcome, details)
                .await
            {
                tracing::warn!(error = %e, action, "cannot audit a gateway key event");
            }
        });
    };
    let mut retried_auth = false;
    let mut last: Option<Response> = None;
    let total = upstreams.len();
    for (i, up) in upstreams.into_iter().enumerate() {
        let more = i + 1 < total;
        let (subject, served_id) = match &up.served {
            Served::Credential(id) => (UsageSubject::Credential, id.as_str()),
            Served::Target(t) => (UsageSubject::Target, t.id.as_str()),
            Served::Environment(var) => (UsageSubject::Environment, *var),
        };
        let mut url = join(up.base, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        // The last try takes the headers; earlier ones copy them.
        let mut headers = if more {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        if let Some(key) = up.key {
            let Ok((name, value)) = auth_header(provider, key) else {
                tracing::warn!(
                    provider = provider.id,
                    served = served_id,
                    "skipping a key that cannot be sent in a header (control characters?)"
                );
                continue;
            };
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
            return provider_error(
                provider,
                StatusCode::BAD_REQUEST,
                "the request path does not make a valid URL",
            );
        };
        *upstream.headers_mut() = headers;
        let outcome =
            tokio::time::timeout(options.first_byte_timeout, gw.client.request(upstream)).await;
        // Only a request that never reached the provider (no connection) goes on to the next
        // key: one that may have been received is not sent twice (it could be generated, and
        // billed, twice).
        let response = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(provider = provider.id, served = served_id, error = %e, "cannot connect to the provider");
                gw.usage
                    .record(subject, served_id, &view.org, provider.id, 0);
                if more {
                    gw.count("failovers", provider.id, "unreachable");
                }
                last = Some(provider_error(
                    provider,
                    StatusCode::BAD_GATEWAY,
                    "the provider could not be reached",
                ));
                continue;
            }
            Ok(Err(e)) if body::body_fault(&e).is_some() => {
                return body_fault_answer(provider, body::body_fault(&e));
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = provider.id, served = served_id, error = %e, "the provider's answer failed");
                gw.usage
                    .record(subject, served_id, &view.org, provider.id, 0);
                return provider_error(
                    provider,
                    StatusCode::BAD_GATEWAY,
                    "the provider's answer failed",
                );
            }
            Err(_) => {
                tracing::warn!(
                    provider = provider.id,
                    served = served_id,
                    "upstream did not answer in time"
                );
                gw.usage
                    .record(subject, served_id, &view.org, provider.id, 0);
                return provider_error(
                    provider,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the provider did not answer in time",
                );
            }
        };
        let status = response.status();
        gw.usage
            .record(subject, served_id, &view.org, provider.id, status.as_u16());
        if let Served::Credential(id) = &up.served {
            let trouble = match status.as_u16() {
                401 | 403 if !retried_auth => {
                    retried_auth = true;
                    Some((Trouble::Failing, FAILING_COOLDOWN))
                }
                429 => Some((
                    Trouble::RateLimited,
                    Duration::from_secs(
                        response
                            .headers()
                            .get(header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .unwrap_or(30)
                            .clamp(1, 3600),
                    ),
                )),
                _ => None,
            };
            if let Some((why, wait)) = trouble {
                if gw.cool_down(id, wait, why) {
                    gw.count("cooldowns", provider.id, why.as_str());
                    let action = match why {
                        Trouble::RateLimited => "gateway_cooldown",
                        Trouble::Failing => "gateway_key_failing",
                    };
                    audit(
                        (*id).clone(),
                        action,
                        Outcome::Failure,
                        json!({ "provider": provider.id, "status": status.as_u16(), "cooldown_seconds": wait.as_secs() }),
                    );
                }
                if more {
                    gw.count("failovers", provider.id, why.as_str());
                    continue;
                }
            } else if !status.is_server_error()
                && !matches!(status.as_u16(), 401 | 403 | 429)
                && let Some(was) = gw.recovered(id)
            {
                gw.count("recoveries", provider.id, was.as_str());
                audit(
                    (*id).clone(),
                    "gateway_key_recovered",
                    Outcome::Success,
                    json!({ "provider": provider.id, "status": status.as_u16(), "was": was.as_str() }),
                );
            }
        }
        let (mut head, body) = response.into_parts();
        // Our connection with the client has its own protocol version (an HTTP/1.0 upstream
        // must not make the answer to an HTTP/1.1 client a 1.0 one, which closes connections).
        head.version = parts.version;
        strip_hop_by_hop(&mut head.headers);
        // A reason phrase of the upstream's own could quote the key; the client gets the
        // canonical one.
        head.extensions.remove::<hyper::ext::ReasonPhrase>();
        // The client holds a gateway token, not the key: an upstream that quotes the key back
        // (in a header, or an error's text) has it replaced by its hint.
        if let Some(key) = up.key {
            mask_headers(&mut head.headers, provider, key);
        }
        let (name, id) = match &up.served {
            Served::Credential(id) => ("x-keyward-credential", id.as_str().to_owned()),
            Served::Target(t) => ("x-keyward-target", t.id.clone()),
            Served::Environment(var) => ("x-keyward-credential", format!("env:{var}")),
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            head.headers.insert(name, v);
        }
        let body = body::IdleTimeout::new(body, options.idle_timeout);
        return match up.key {
            // Error answers are where providers quote what they were sent.
            // An error answer compressed although none was asked for cannot be checked for
            // the key: it is withheld.
            Some(_)
                if !status.is_success()
                    && head
                        .headers
                        .get_all(header::CONTENT_ENCODING)
                        .iter()
                        .flat_map(|e| e.as_bytes().split(|b| *b == b','))
                        .any(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity")) =>
            {
                tracing::warn!(
                    provider = provider.id,
                    status = status.as_u16(),
                    "withholding a compressed error answer, which cannot be checked for the key"
                );
                provider_error(
                    provider,
                    status,
                    "the provider's error answer was compressed and could not be checked for the key, so it is withheld",
                )
            }
            Some(key) if !status.is_success() => {
                // The masked text has another length.
                head.headers.remove(header::CONTENT_LENGTH);
                let masked = body::Masked::new(body, masker(provider, key));
                Response::from_parts(head, Body::new(masked))
            }
            _ => Response::from_parts(head, Body::new(body)),
        };
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
