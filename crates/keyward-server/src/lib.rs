//! Keyward's HTTP server: the admin API on axum, over one [`Vault`].
//!
//! - [`app`] builds the router (tested with `tower::ServiceExt::oneshot` or a real listener).
//! - [`serve`] runs it on a listener until a shutdown future resolves.
//! - `auth`: bearer tokens into a [`Principal`].
//! - `access`: the one access policy (role × organization × operation) and the proof of access
//!   the vault's admin side needs.
//! - `ops`: every admin operation, once; `routes` (JSON: health, the "Provider Credentials"
//!   admin-guide routes, `/api/v1`) and `ui` (the console) are adapters over them.
//! - `error`: one [`ApiError`], answered as `application/problem+json`.
//!
//! Every operation that touches a secret goes through a `Vault` method that audits it in the
//! same transaction; a token of one organization gets 404 for anything of another.

mod access;
mod audit_sink;
mod auth;
pub mod doctor;
mod error;
mod gateway;
pub mod identity;
mod jwt;
mod limits;
mod metrics;
mod openapi;
mod ops;
mod request_log;
pub use ops::spend::{parse_instant, parse_usd};
mod routes;
mod telemetry;
mod tls;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use keyward_store::Vault;

pub use audit_sink::{SIGNATURE_HEADER, SinkSettings, SinkSpec, SinkStatus};
pub use auth::Caller;
pub use error::ApiError;
pub use gateway::{
    GatewayOptions, LoadRecord, LoadTrigger, TargetSummary, TargetsError, TargetsLoaded,
    check_targets_file,
};
pub use jwt::JwtKeys;
pub use keyward_store::{Principal, Role};
pub use telemetry::Telemetry;
pub use tls::{TlsListener, load_tls_config};

/// What every handler shares. Cloned for every request (axum's `State`), so it is two
/// reference counts: the vault and everything else.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The vault, behind the access policy: admin operations reach it with a grant.
    vault: access::Guarded,
    shared: Arc<Shared>,
}

/// How often a server prunes the audit events past the policy's retention.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// How often a server looks whether the operator's prices changed.
const PRICES_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct Shared {
    limiter: limits::FailureLimiter,
    metrics: metrics::Metrics,
    jwt: Arc<JwtKeys>,
    /// Workload identity: platform-signed JWTs mapped to a role and organization.
    workloads: Arc<identity::workloads::Workloads>,
    /// The console's single sign-on, if configured.
    sso: Option<Arc<identity::oidc::Sso>>,
    /// Whether the console takes API tokens at its sign-in page (the break-glass path).
    token_sign_in: TokenSignIn,
    /// Single sign-ons started per address.
    sso_starts: limits::SsoStarts,
    gateway: Arc<gateway::Gateway>,
    /// Whether organizations without their own setting fall back to the server's environment
    /// (`--env-fallback`; off: a server must not hand its own keys to every organization).
    env_fallback: bool,
    /// How long console sessions live.
    ui_sessions: keyward_store::SessionLimits,
    /// Whether the console's cookie is marked `Secure` (served over TLS).
    secure_cookies: bool,
    /// The console's one-time form ids and its master-key rotation.
    console: ui::ConsoleState,
    /// Where the master keys came from, for `/readyz` (`the KMS (transit) answered at start`).
    keys_from: Option<String>,
    /// Where the audit trail is shipped.
    sinks: Arc<audit_sink::Sinks>,
    /// What the doctor is told about this server beside its store.
    deployment: Arc<doctor::Deployment>,
}

impl AppState {
    /// The state of a server over `vault`.
    pub fn new(vault: Vault) -> Self {
        Self {
            vault: access::Guarded::new(vault),
            shared: Arc::default(),
        }
    }

    /// The same settings with `change` applied: for the builders below, used before serving
    /// (counters start over).
    fn rebuilt(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared {
            jwt: self.shared.jwt.clone(),
            workloads: self.shared.workloads.clone(),
            sso: self.shared.sso.clone(),
            token_sign_in: self.shared.token_sign_in,
            gateway: self.shared.gateway.clone(),
            limiter: limits::FailureLimiter::new(self.shared.limiter.max_failures()),
            env_fallback: self.shared.env_fallback,
            ui_sessions: self.shared.ui_sessions,
            secure_cookies: self.shared.secure_cookies,
            keys_from: self.shared.keys_from.clone(),
            sinks: self.shared.sinks.clone(),
            deployment: self.shared.deployment.clone(),
            ..Shared::default()
        };
        change(&mut shared);
        Self {
            vault: self.vault,
            shared: Arc::new(shared),
        }
    }

    /// Allows `n` failed authentications a minute per address (default 10) before the checks
    /// of the address are slowed and its failures answered 429 for the rest of the minute.
    #[must_use]
    pub fn with_auth_failures_per_minute(self, n: u32) -> Self {
        self.rebuilt(|s| s.limiter = limits::FailureLimiter::new(n))
    }

    /// Runs the gateway with these settings (timeouts, usage batching, static targets file);
    /// call [`AppState::reload_gateway_targets`] to load the targets.
    #[must_use]
    pub fn with_gateway(self, options: GatewayOptions) -> Self {
        self.rebuilt(|s| s.gateway = Arc::new(gateway::Gateway::new(options)))
    }

    /// Lets organizations that say nothing fall back to the server's own environment
    /// (`OPENAI_API_KEY`, ...) when they have no active credential; each organization's own
    /// setting (`PATCH /api/v1/orgs/{org}` `env_fallback`) wins either way.
    #[must_use]
    pub fn with_env_fallback(self, on: bool) -> Self {
        self.rebuilt(|s| s.env_fallback = on)
    }

    /// Ships the audit trail to these sinks (checked with [`SinkSettings::check`] first).
    #[must_use]
    pub fn with_audit_sinks(self, settings: SinkSettings) -> Self {
        self.rebuilt(|s| s.sinks = Arc::new(audit_sink::Sinks::new(settings)))
    }

    /// Tells `/api/v1/doctor` about the deployment beside the store (its data directory, user,
    /// listen certificate; the targets' state it reads itself).
    #[must_use]
    pub fn with_deployment(self, deployment: doctor::Deployment) -> Self {
        self.rebuilt(|s| s.deployment = Arc::new(deployment))
    }

    /// Says on `/readyz` where the master keys came from (a KMS that answered at start).
    #[must_use]
    pub fn with_keys_from(self, note: impl Into<String>) -> Self {
        let note = note.into();
        self.rebuilt(|s| s.keys_from = Some(note))
    }

    /// Where the master keys came from, if said.
    pub(crate) fn keys_from(&self) -> Option<&str> {
        self.shared.keys_from.as_deref()
    }

    /// How long console sessions live (default 30 minutes idle, 12 hours at most).
    #[must_use]
    pub fn with_ui_sessions(self, limits: keyward_store::SessionLimits) -> Self {
        self.rebuilt(|s| s.ui_sessions = limits)
    }

    /// Whether resolutions fall back to the server's environment where an organization says
    /// nothing (`--env-fallback`).
    pub(crate) fn env_fallback_default(&self) -> bool {
        self.shared.env_fallback
    }

    /// The environment-fallback rule of this server's resolutions.
    pub(crate) fn env_fallback(&self) -> keyward_core::resolve::EnvFallback {
        keyward_core::resolve::EnvFallback::Org {
            default: self.shared.env_fallback,
        }
    }

    /// Loads (again) the gateway's static targets file, audited as `actor`: what it took, or
    /// why the file was refused, in which case the targets loaded before stay in use.
    pub async fn reload_gateway_targets(
        &self,
        by: LoadTrigger,
        actor: &str,
    ) -> Result<TargetsLoaded, TargetsError> {
        self.shared
            .gateway
            .reload_targets(self.vault.serving(), by, actor)
            .await
    }

    /// Writes the gateway usage counted since the last flush; kept for the next one if the
    /// vault cannot take it now.
    pub async fn flush_usage(&self) {
        let usage = &self.shared.gateway.usage;
        let batch = usage.take();
        let spend = usage.take_spend();
        if batch.is_empty() && spend.is_empty() {
            return;
        }
        if let Err(e) = self.vault.serving().record_usage(&batch, &spend).await {
            tracing::warn!(error = %e, "cannot write gateway usage; it is kept for the next try");
            usage.restore(batch);
            usage.restore_spend(spend);
        }
    }

    /// Reports this replica's spending of every budget it holds a lease of, and sends the
    /// alerts that crossed.
    pub async fn report_budgets(&self) {
        let alerts = self
            .shared
            .gateway
            .budgets
            .report_all(self.vault.serving())
            .await;
        gateway::send_alerts(alerts);
    }

    /// Reads what the gateway needs before it serves: the operator's prices and the budgets
    /// (until the budgets are read, budgeted requests get 503 rather than going unbudgeted).
    async fn load_at_start(&self) {
        self.refresh_prices(true).await;
        self.reload_budgets().await;
        // With a targets file, its load at start put the policy in force already.
        if self.shared.gateway.options().targets_file.is_none() {
            self.shared
                .gateway
                .apply_audit_policy(self.vault.serving(), "serve:start")
                .await;
        }
    }

    /// Prunes the events the audit policy's retention lets go (none without one).
    async fn apply_retention(&self) {
        let Some(days) = self.shared.gateway.audit_policy().retention_days else {
            return;
        };
        let before =
            keyward_core::Millis(keyward_core::Millis::now().0 - i64::from(days) * 86_400_000);
        match self
            .vault
            .serving()
            .prune_events(before, "serve:retention")
            .await
        {
            Ok(r) if r.removed > 0 => {
                tracing::info!(
                    removed = r.removed,
                    through_seq = r.through_seq,
                    "audit events past their retention pruned"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
        }
    }

    /// Reads the budgets' definitions again.
    pub async fn reload_budgets(&self) {
        if let Err(e) = self
            .shared
            .gateway
            .budgets
            .reload(self.vault.serving())
            .await
        {
            tracing::warn!(error = %e, "cannot read the budgets; the ones read before stay in use");
        }
    }

    /// Reads the operator's prices again if another process (or this one) changed them.
    pub async fn refresh_prices(&self, force: bool) {
        if let Err(e) = self
            .shared
            .gateway
            .refresh_prices(self.vault.serving(), force)
            .await
        {
            tracing::warn!(error = %e, "cannot read the operator's prices; the ones read before stay in use");
        }
    }

    /// Writes usage every `usage_flush_interval` until told to stop; a flush under way
    /// finishes first, so no batch is lost between taking it and writing it.
    fn spawn_usage_writer(&self) -> UsageWriter {
        let state = self.clone();
        // `interval` refuses zero.
        let every = self
            .shared
            .gateway
            .options()
            .usage_flush_interval
            .max(std::time::Duration::from_millis(1));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        // Keys other replicas set aside, or saw recover: subscribed before the server
        // answers anything (in the task, a note that came before its first poll was lost).
        let mut notes = state.vault.serving().key_notes();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The operator's prices are read at start and looked at again every
            // PRICES_EVERY (an import through another replica shows within that).
            let mut prices = tokio::time::interval(PRICES_EVERY);
            prices.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Budgets are read at start and every DEFS_EVERY; this replica's spending is
            // reported with each flush.
            let mut budgets = tokio::time::interval(gateway::budgets::DEFS_EVERY);
            budgets.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut notes_open = true;
            loop {
                tokio::select! {
                    note = notes.recv(), if notes_open => match note {
                        Ok(note) => state.shared.gateway.heard(note),
                        // Some were missed: the provider tells this replica itself.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => notes_open = false,
                    },
                    _ = tick.tick() => {
                        state.flush_usage().await;
                        state.shared.gateway.flush_request_events(state.vault.serving()).await;
                        state.report_budgets().await;
                    }
                    _ = prices.tick() => state.refresh_prices(false).await,
                    _ = budgets.tick() => state.reload_budgets().await,
                    _ = &mut stopped => break,
                }
            }
            state.flush_usage().await;
            state
                .shared
                .gateway
                .flush_request_events(state.vault.serving())
                .await;
            state
                .shared
                .gateway
                .budgets
                .give_back_all(state.vault.serving())
                .await;
        });
        let (sinks_stop, sinks_stopped) = tokio::sync::watch::channel(false);
        let mut others = self
            .shared
            .sinks
            .spawn(self.vault.serving(), &sinks_stopped);
        // The retention policy's prune: a minute after start, then every RETENTION_EVERY, in a
        // task of its own (a large prune must not hold up the usage writes).
        let state = self.clone();
        let mut stopped = sinks_stopped;
        others.push(tokio::spawn(async move {
            let mut delay = std::time::Duration::from_secs(60);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(delay) => state.apply_retention().await,
                    _ = stopped.changed() => break,
                }
                delay = RETENTION_EVERY;
            }
        }));
        UsageWriter {
            stop,
            task,
            sinks_stop,
            others,
        }
    }

    /// Also accepts HS256 JWTs signed with these keys.
    #[must_use]
    pub fn with_jwt_keys(self, keys: JwtKeys) -> Self {
        self.rebuilt(|s| s.jwt = Arc::new(keys))
    }

    /// Accepts platform-signed JWTs as bearers, mapped by these rules
    /// (`KEYWARD_WORKLOAD_IDENTITY`).
    #[must_use]
    pub fn with_workloads(self, workloads: identity::workloads::Workloads) -> Self {
        self.rebuilt(|s| s.workloads = Arc::new(workloads))
    }

    /// Takes what the identity file configures (`KEYWARD_IDENTITY_CONFIG`): the console's
    /// single sign-on and the workload rules.
    #[must_use]
    pub fn with_identity(self, identity: identity::Identity) -> Self {
        self.rebuilt(|s| {
            if let Some(sso) = identity.sso {
                if let Some(on) = sso.token_sign_in()
                    && s.token_sign_in == TokenSignIn::Default
                {
                    s.token_sign_in = if on {
                        TokenSignIn::On
                    } else {
                        TokenSignIn::Off
                    };
                }
                s.sso = Some(Arc::new(sso));
            }
            s.workloads = Arc::new(identity.workloads);
        })
    }

    /// Whether the console's sign-in page takes API tokens (`--ui-token-sign-in on|off`; by
    /// default it does, or as the identity file says).
    #[must_use]
    pub fn with_token_sign_in(self, on: bool) -> Self {
        self.rebuilt(|s| {
            s.token_sign_in = if on {
                TokenSignIn::On
            } else {
                TokenSignIn::Off
            }
        })
    }

    /// Whether the console takes API tokens at sign-in.
    pub(crate) fn token_sign_in(&self) -> bool {
        self.shared.token_sign_in != TokenSignIn::Off
    }

    /// The console's single sign-on, if configured.
    pub(crate) fn sso(&self) -> Option<&identity::oidc::Sso> {
        self.shared.sso.as_deref()
    }
}

/// Whether the console takes API tokens at sign-in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum TokenSignIn {
    /// Not said: on, unless the identity file says otherwise.
    #[default]
    Default,
    On,
    Off,
}

/// The background task that writes gateway usage.
struct UsageWriter {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// Stops the audit sinks' shippers and the retention task.
    sinks_stop: tokio::sync::watch::Sender<bool>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl UsageWriter {
    /// Stops it after a last write (the audit events it writes are shipped by the next start:
    /// the sinks' cursors are in the store).
    async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = self.sinks_stop.send(true);
        for task in self.others {
            let _ = task.await;
        }
    }
}

/// The whole router.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes::router();
    let doc = Arc::new(doc);
    router
        // The gateway takes any method and path; it speaks the providers' APIs, not ours, so it
        // is not in the OpenAPI document.
        .route(
            "/gateway/{provider}/{*path}",
            axum::routing::any(gateway::forward),
        )
        .route(
            "/gateway/t/{target}/{*path}",
            axum::routing::any(gateway::forward_target),
        )
        // The web console: pages, not an API, so not in the OpenAPI document either. A person
        // who opens the server's address expects it.
        .merge(ui::router(&state))
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::to("/ui/") }),
        )
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            })
            // Its errors (a 405) are problem+json like every other route's.
            .layer(axum::middleware::map_response(error::as_problem)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_log::track,
        ))
        .with_state(state)
}

/// The OpenAPI document of every route [`app`] serves (besides `/api/openapi.json` itself).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::router().1
}

/// Every (method, path) the router serves, from the OpenAPI document.
pub fn route_list() -> Vec<(String, String)> {
    let doc = openapi();
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if op.is_some() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// The client's address, as handlers see it (whether the connection is TLS or not).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The plain-HTTP listener: every accepted connection gets `TCP_NODELAY`, so that small writes
/// (a streamed event, the gateway's answer) go out at once instead of waiting for the
/// previous segment's acknowledgement.
struct NoDelayListener(tokio::net::TcpListener);

impl axum::serve::Listener for NoDelayListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        (tcp, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, NoDelayListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, NoDelayListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight. Gateway usage is written in the background, and once more at the end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.load_at_start().await;
    let writer = state.spawn_usage_writer();
    let listener = NoDelayListener(listener);
    let served = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    writer.finish().await;
    served
}

/// Answers while the master keys are not open yet (the KMS that keeps them does not answer at
/// start, and `keyward serve` retries): `/healthz` says the process is up; `/readyz` and every
/// other route answer 503 with `why`, which the caller updates between attempts. Ends when
/// `shutdown` resolves, and the real server takes the address.
pub async fn serve_starting(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    why: Arc<std::sync::RwLock<String>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::response::IntoResponse as _;
    let waiting = move || {
        let why = why.read().map(|w| w.clone()).unwrap_or_default();
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "5")],
            axum::Json(serde_json::json!({
                "type": "about:blank",
                "title": "starting",
                "status": 503,
                "detail": format!("Keyward is starting: {why}"),
            })),
        )
            .into_response()
    };
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .fallback(move || {
            let waiting = waiting.clone();
            async move { waiting() }
        });
    match tls {
        Some(tls) => {
            axum::serve(TlsListener::new(listener, tls)?, app.into_make_service())
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(NoDelayListener(listener), app.into_make_service())
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// Like [`serve`], over TLS.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Served over TLS: the console's cookie goes over TLS only.
    let state = state.rebuilt(|s| s.secure_cookies = true);
    state.load_at_start().await;
    let writer = state.spawn_usage_writer();
    let served = axum::serve(
        TlsListener::new(listener, tls)?,
        app(state.clone()).into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    writer.finish().await;
    served
}
