//! `keyward serve` and `keyward token`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow};
use keyward_core::OrgId;
use keyward_server::{AppState, GatewayOptions, JwtKeys, LoadTrigger, Role};
use keyward_store::Vault;
use secrecy::{ExposeSecret as _, SecretString};

use crate::backend::Backend;
use crate::cli::{
    GatewayCommand, GatewayTokenCommand, ServeArgs, SessionCommand, SsoCommand, TokenCommand,
};
use crate::output::{Table, print_json, time};

/// Runs the server until SIGINT or SIGTERM. On first start, makes sure an admin token exists:
/// `KEYWARD_ADMIN_TOKEN` if set, else a new one printed once.
pub(crate) async fn serve(
    vault: Vault,
    args: ServeArgs,
    keys_from: Option<String>,
    data_dir: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    // Configuration is checked before anything is written.
    let tls = tls_config(&args)?;
    let jwt_keys = match std::env::var("KEYWARD_JWT_VERIFICATION_KEYS") {
        Ok(spec) if !spec.is_empty() => JwtKeys::parse(&spec).map_err(|e| anyhow!(e))?,
        _ => JwtKeys::default(),
    };
    let mut state = AppState::new(vault.clone());
    // The identity file (`KEYWARD_IDENTITY_CONFIG`); `KEYWARD_WORKLOAD_IDENTITY` is its
    // earlier name, for a file of workload rules only.
    let older = std::env::var_os("KEYWARD_WORKLOAD_IDENTITY")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    if let (Some(file), Some(old)) = (&args.identity_config, &older)
        && file != old
    {
        return Err(anyhow!(
            "KEYWARD_IDENTITY_CONFIG and KEYWARD_WORKLOAD_IDENTITY name different files; KEYWARD_WORKLOAD_IDENTITY is the older name of the same setting: keep one"
        ));
    }
    let identity_file = args.identity_config.clone().or(older);
    if let Some(on) = args.ui_token_sign_in {
        state = state.with_token_sign_in(on);
    }
    let mut sso = false;
    if let Some(path) = identity_file {
        let env = |name: &str| std::env::var(name).ok();
        let identity = keyward_server::identity::Identity::load(&path, &env)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        sso = identity.sso.is_some();
        state = state.with_identity(identity);
    }
    if args.ui_token_sign_in == Some(false) && !sso {
        return Err(anyhow!(
            "--ui-token-sign-in off leaves the console no way in: configure single sign-on (oidc: in KEYWARD_IDENTITY_CONFIG) first"
        ));
    }
    state = state.with_deployment(keyward_server::doctor::Deployment {
        data_dir,
        uid: Some(nix::unistd::getuid().as_raw()),
        tls_cert: args.tls_cert.clone(),
        keys_from: keys_from
            .clone()
            .or_else(crate::commands::doctor::keys_given),
        targets: None,
        key_file: crate::commands::doctor::key_file(),
        sinks: Vec::new(),
    });
    if let Some(note) = keys_from {
        state = state.with_keys_from(note);
    }
    let sinks = keyward_server::SinkSettings {
        sinks: args
            .audit_sinks
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse())
            .collect::<Result<_, String>>()
            .map_err(|e| anyhow!(e))?,
        hmac_key: sink_key(&args)?,
    };
    sinks.check().map_err(|e| anyhow!(e))?;
    let state = state
        .with_audit_sinks(sinks)
        .with_jwt_keys(jwt_keys)
        .with_auth_failures_per_minute(args.auth_failures_per_minute)
        .with_env_fallback(args.env_fallback)
        .with_ui_sessions(keyward_store::SessionLimits {
            idle: args.ui_idle_timeout,
            max: args.ui_session_max,
        })
        .with_gateway(GatewayOptions {
            connect_timeout: args.gateway_connect_timeout,
            first_byte_timeout: args.gateway_first_byte_timeout,
            idle_timeout: args.gateway_idle_timeout,
            targets_file: args.gateway_config.clone(),
            stale_for: args.gateway_serve_stale_for,
            metrics_by_org: args.metrics_by_org,
            realtime_idle_timeout: args.gateway_realtime_idle_timeout,
            realtime_max_duration: args.gateway_realtime_max_duration,
            token_endpoints: keyward_probe::cloud::TokenEndpoints {
                google: args.google_token_url.clone(),
                entra: args.entra_authority.clone(),
            },
            audit_policy: keyward_store::AuditPolicy {
                retention_days: args.audit_retention_days,
                immutable: args.audit_immutable,
                log_all_access: args.audit_log_all_access,
            },
            ..GatewayOptions::default()
        });
    if args.gateway_config.is_some() {
        let loaded = state
            .reload_gateway_targets(LoadTrigger::Start, "serve:start")
            .await?;
        say_loaded("gateway targets", &loaded, false);
    }
    let listen: SocketAddr = args.listen;
    let operator_token = std::env::var("KEYWARD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if vault.has_admin_token().await? {
        // Taken on first start only; say so rather than let the operator find out by a 401.
        if let Some(token) = &operator_token
            && vault.authenticate(token).await?.is_none()
        {
            eprintln!(
                "warning: KEYWARD_ADMIN_TOKEN is not a working token of this store and was not \
                 taken: it is read only on the first start, when no admin token exists \
                 (make another with `keyward token create --role admin --name NAME`)"
            );
        }
    } else {
        match operator_token {
            Some(token) => {
                let imported = vault
                    .import_token(
                        "admin (KEYWARD_ADMIN_TOKEN)",
                        Role::Admin,
                        None,
                        &SecretString::from(token.clone()),
                        "serve:bootstrap",
                    )
                    .await;
                match imported {
                    Ok(_) => say!("admin token taken from KEYWARD_ADMIN_TOKEN"),
                    // Another server's first start took the same token a moment earlier.
                    Err(keyward_store::VaultError::AlreadyExists(_))
                        if vault.authenticate(&token).await?.is_some() =>
                    {
                        say!("admin token taken from KEYWARD_ADMIN_TOKEN (by another start)");
                    }
                    Err(e) => return Err(anyhow!(e).context("KEYWARD_ADMIN_TOKEN")),
                }
            }
            None => {
                let (token, view) = vault
                    .create_token(
                        "bootstrap admin",
                        Role::Admin,
                        None,
                        None,
                        "serve:bootstrap",
                    )
                    .await?;
                say!(
                    "admin token (shown once; store it now, e.g. export KEYWARD_TOKEN=...):\n{}\n(token id {})",
                    token.expose_secret(),
                    view.id
                );
            }
        }
    }
    // Listen for SIGINT and SIGTERM before saying we are up, so that a stop request that
    // follows the announcement at once is a graceful stop, not the default kill.
    let stop = shutdown()?;
    reload_on_hangup(&state, args.gateway_config.is_some())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    say!("keyward listening on {scheme}://{local}");
    say!(
        "web console: {scheme}://{local}/ui/ ({})",
        match (sso, args.ui_token_sign_in != Some(false)) {
            (true, true) => "sign in with single sign-on, or an API token",
            (true, false) => "sign in with single sign-on",
            (false, _) => "sign in with an API token",
        }
    );
    tracing::info!(%local, scheme, "listening");
    match tls {
        Some(config) => {
            keyward_server::serve_tls(listener, std::sync::Arc::new(config), state, stop).await?;
        }
        None => keyward_server::serve(listener, state, stop).await?,
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The HTTP audit sinks' signing key: the file's bytes (a trailing newline dropped), or
/// KEYWARD_AUDIT_SINK_HMAC_KEY's; both set is ambiguous.
fn sink_key(args: &ServeArgs) -> Result<Option<secrecy::SecretBox<Vec<u8>>>> {
    let inline = std::env::var("KEYWARD_AUDIT_SINK_HMAC_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let key = match (&args.audit_sink_hmac_key_file, inline) {
        (Some(_), Some(_)) => {
            return Err(anyhow!(
                "both KEYWARD_AUDIT_SINK_HMAC_KEY and an HMAC key file are set: keep one"
            ));
        }
        (Some(path), None) => {
            let mut bytes = std::fs::read(path).with_context(|| {
                format!("cannot read the audit sinks' HMAC key {}", path.display())
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Some(bytes)
        }
        (None, Some(k)) => Some(k.into_bytes()),
        (None, None) => None,
    };
    Ok(key.map(|k| secrecy::SecretBox::new(Box::new(k))))
}

/// `keyward healthcheck`: 0 if the server at `listen` answers `/healthz` with 200 in time
/// (over TLS when it serves TLS; its certificate is not checked: this is the machine's own
/// server on loopback, and nothing secret is sent).
pub(crate) async fn healthcheck(listen: SocketAddr, tls: bool) -> Result<ExitCode> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(tls)
        .build()?;
    let url = format!("{}://{addr}/healthz", if tls { "https" } else { "http" });
    match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(ExitCode::SUCCESS),
        Ok(r) => {
            eprintln!("unhealthy: {url} answered {}", r.status());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {}", e.without_url());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn tls_config(args: &ServeArgs) -> Result<Option<rustls::ServerConfig>> {
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(keyward_server::load_tls_config(cert, key).map_err(|e| anyhow!(e))?)
        }
        _ => None,
    })
}

/// The master keys the KMS keeps, for a server: while the KMS cannot be reached, tries again
/// with growing pauses (1 s to 30 s) and answers on the listen address meanwhile (`/healthz`
/// up, `/readyz` 503 saying why). A KMS that refuses (wrong token, no permission, disabled key)
/// is not retried: the error says what is missing.
pub(crate) async fn wait_for_keys(
    kms: &dyn keyward_kms::Kms,
    location: &keyward_store::Location,
    args: &ServeArgs,
) -> Result<keyward_crypto::Keyring> {
    let first = match keyward::kms::keyring(kms, location).await {
        Ok(keys) => return Ok(keys),
        Err(e) if !e.is_transient() => {
            return Err(anyhow!(e).context("cannot open the master keys"));
        }
        Err(e) => e,
    };
    let tls = tls_config(args)?.map(std::sync::Arc::new);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The answer is public: it says which kind of KMS and that it is away, nothing of where
    // (the log says everything).
    let waiting = format!(
        "waiting for the KMS ({}), which cannot be reached; see the server's log",
        kms.kind()
    );
    let why = std::sync::Arc::new(std::sync::RwLock::new(waiting));
    let (stop_waiting, stopped) = tokio::sync::oneshot::channel::<()>();
    let answering = tokio::spawn(keyward_server::serve_starting(
        listener,
        tls,
        why.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut stop = std::pin::pin!(shutdown()?);
    let mut delay = std::time::Duration::from_secs(1);
    let mut last = first;
    let result = loop {
        tracing::warn!(retry_in = ?delay, "the KMS that keeps the master keys cannot be reached; trying again: {last}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut stop => break Err(anyhow!("stopped while waiting for the KMS: {last}")),
        }
        match keyward::kms::keyring(kms, location).await {
            Ok(keys) => break Ok(keys),
            Err(e) if e.is_transient() => {
                last = e;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => break Err(anyhow!(e).context("cannot open the master keys")),
        }
    };
    let _ = stop_waiting.send(());
    answering
        .await
        .map_err(|e| anyhow!("the starting listener failed: {e}"))??;
    result
}

/// Registers SIGINT and SIGTERM handlers now; the future resolves when either arrives.
fn shutdown() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// SIGHUP reloads the gateway's static targets (a failed reload is logged and changes nothing);
/// without a targets file it is noted and ignored (never the default action, which would stop
/// the server).
fn reload_on_hangup(state: &AppState, has_targets: bool) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let state = state.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if !has_targets {
                tracing::warn!("SIGHUP ignored: no --gateway-config to reload");
                continue;
            }
            // The reload logs what it took, ignored or refused itself.
            if let Ok(loaded) = state
                .reload_gateway_targets(LoadTrigger::Sighup, "serve:sighup")
                .await
            {
                say_loaded("gateway targets reloaded", &loaded, false);
            }
        }
    });
    Ok(())
}

/// One line per load: the targets with the references they resolved (names only); for a
/// person at the CLI (`tell`), the sections of the file that were ignored and the audit policy
/// in force (a server logs those itself).
fn say_loaded(what: &str, loaded: &keyward_server::TargetsLoaded, tell: bool) {
    let targets: Vec<String> = loaded
        .targets
        .iter()
        .map(|t| match &t.reference {
            Some(r) => format!("{} ({r})", t.id),
            None => t.id.clone(),
        })
        .collect();
    if targets.is_empty() {
        say!("{what}: none");
    } else {
        say!("{what}: {}", targets.join(", "));
    }
    if !tell {
        return;
    }
    if !loaded.ignored.is_empty() {
        eprintln!(
            "note: the gateway config's sections {} are not implemented by Keyward and were ignored",
            loaded.ignored.join(", ")
        );
    }
    if let Some(p) = loaded.audit_policy {
        say!(
            "audit policy in force: retention {}, {}, {}",
            p.retention_days
                .map_or_else(|| "none".to_owned(), |d| format!("{d} days")),
            if p.immutable {
                "immutable"
            } else {
                "not immutable"
            },
            if p.log_all_access {
                "every gateway request audited"
            } else {
                "gateway requests counted"
            }
        );
    }
}

/// The gateway status for people: targets, last load, then credentials by provider.
fn print_status(status: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    match status["last_load"].as_object() {
        None if status["targets_file"] == true => say!("targets: not loaded yet"),
        None => say!("targets: none (the server has no --gateway-config)"),
        Some(load) => {
            let at = load["at"]
                .as_i64()
                .map_or_else(|| "-".into(), |t| time(keyward_core::Millis(t)));
            match load["error"].as_str() {
                None => say!("targets last loaded {at} by {}: ok", text(&load["by"])),
                Some(e) => {
                    say!(
                        "targets last loaded {at} by {}: FAILED, the previous ones stay: {e}",
                        text(&load["by"])
                    );
                    if let Some(serving) = status["serving_since"].as_object() {
                        let since = serving["at"]
                            .as_i64()
                            .map_or_else(|| "-".into(), |t| time(keyward_core::Millis(t)));
                        say!(
                            "targets served are those loaded {since} by {}",
                            text(&serving["by"])
                        );
                    }
                }
            }
        }
    }
    let targets = list(&status["targets"]);
    if !targets.is_empty() {
        let mut t = Table::new(["TARGET", "PROVIDER", "ORG", "BASE URL", "KEY FROM", "MODEL"]);
        for target in &targets {
            t.row([
                text(&target["id"]),
                text(&target["provider"]),
                text(&target["org"]),
                text(&target["base_url"]),
                text(&target["reference"]),
                text(&target["model"]),
            ]);
        }
        t.print();
    }
    let policy = &status["audit_policy"];
    if policy.is_object() {
        say!(
            "audit policy: retention {}, {}, {}",
            policy["retention_days"]
                .as_u64()
                .map_or_else(|| "none".to_owned(), |d| format!("{d} days")),
            if policy["immutable"] == true {
                "immutable"
            } else {
                "not immutable"
            },
            if policy["log_all_access"] == true {
                "every gateway request audited"
            } else {
                "gateway requests counted"
            }
        );
    }
    for sink in list(&status["audit_sinks"]) {
        let state = match (sink["shipping"] == true, sink["last_error"].as_str()) {
            (_, Some(e)) => format!("FAILING: {e}"),
            (true, None) => "shipping".to_owned(),
            (false, None) => format!(
                "held by process {} (another replica, or one that stopped without giving it up: its lease lapses within 30 s)",
                sink["held_by"].as_str().unwrap_or("?")
            ),
        };
        say!(
            "audit sink {}: delivered through event {}, {} behind, {state}",
            text(&sink["name"]),
            sink["delivered_seq"],
            sink["lag"]
        );
    }
    let ignored: Vec<String> = list(&status["ignored"]).iter().map(text).collect();
    if !ignored.is_empty() {
        say!(
            "ignored sections of the targets file: {}",
            ignored.join(", ")
        );
    }
    say!("");
    let mut t = Table::new(["ORG", "PROVIDER", "CREDENTIAL", "KEY", "STATE"]);
    for p in list(&status["providers"]) {
        for c in list(&p["active"]) {
            t.row([
                text(&p["org"]),
                text(&p["provider"]),
                text(&c["name"]),
                text(&c["key_hint"]),
                "active".into(),
            ]);
        }
        for c in list(&p["set_aside"]) {
            let until = c["until"]
                .as_i64()
                .map_or_else(|| "-".into(), |t| time(keyward_core::Millis(t)));
            t.row([
                text(&p["org"]),
                text(&p["provider"]),
                text(&c["name"]),
                text(&c["key_hint"]),
                format!("set aside ({}) until {until}", text(&c["reason"])),
            ]);
        }
    }
    t.print();
}

/// `keyward gateway ...`.
pub(crate) async fn gateway(backend: &Backend, cmd: GatewayCommand) -> Result<ExitCode> {
    match cmd {
        GatewayCommand::Reload => {
            say_loaded(
                "gateway targets reloaded",
                &backend.reload_gateway().await?,
                true,
            );
        }
        GatewayCommand::Status { org, json } => {
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let status = backend.gateway_status(org.as_ref()).await?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
        }
        GatewayCommand::Usage { org, json } => {
            let org = OrgId::new(&org)?;
            let usage = backend.usage(&org).await?;
            if json {
                print_json(&usage)?;
            } else {
                let mut t = Table::new([
                    "KIND",
                    "ID",
                    "NAME",
                    "PROVIDER",
                    "REQUESTS",
                    "LAST USED",
                    "BY STATUS",
                ]);
                for u in usage {
                    t.row([
                        u.subject.as_str().to_owned(),
                        u.id,
                        u.name.unwrap_or_else(|| "(deleted)".into()),
                        u.provider.unwrap_or_else(|| "-".into()),
                        u.requests.to_string(),
                        time(u.last_used_at),
                        u.statuses
                            .iter()
                            .map(|(s, n)| format!("{s}:{n}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn token(backend: &Backend, cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            role,
            org,
            name,
            expires_in,
            json,
        } => {
            let role: Role = role.parse()?;
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let (token, view) = backend
                .create_token(
                    &name,
                    role,
                    org.as_ref(),
                    expires_in_seconds(expires_in.as_deref())?,
                )
                .await?;
            if json {
                let mut v = serde_json::to_value(&view)?;
                v["token"] = serde_json::Value::String(token.expose_secret().to_owned());
                print_json(&v)?;
            } else {
                say!("{}", token.expose_secret());
                eprintln!(
                    "created {role} token '{}' (id {}); it is shown only now",
                    view.name, view.id
                );
            }
        }
        TokenCommand::List { org, json } => {
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let tokens = backend.list_tokens(org.as_ref()).await?;
            if json {
                print_json(&tokens)?;
            } else {
                let mut t = Table::new(["ID", "NAME", "ROLE", "ORG", "PREFIX", "EXPIRES", "STATE"]);
                for v in tokens {
                    t.row([
                        v.id,
                        v.name,
                        v.role.to_string(),
                        v.org.map_or_else(|| "-".into(), |o| o.to_string()),
                        format!("{}...", v.prefix),
                        v.expires_at.map_or_else(|| "never".into(), time),
                        token_state(v.revoked_at, v.expires_at),
                    ]);
                }
                t.print();
            }
        }
        TokenCommand::Revoke { id } => {
            let view = backend.revoke_token(&id).await?;
            say!("revoked token {} ({})", view.id, view.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyward session list|end`.
pub(crate) async fn session(backend: &Backend, cmd: SessionCommand) -> Result<ExitCode> {
    match cmd {
        SessionCommand::List { json } => {
            let sessions = backend.list_sessions().await?;
            if json {
                print_json(&sessions)?;
            } else {
                let mut t = Table::new(["ID", "WHO", "ROLES", "FROM", "SINCE", "ENDS"]);
                for s in sessions {
                    let roles = s
                        .grants
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    t.row([
                        s.id,
                        s.actor,
                        roles,
                        s.from.unwrap_or_else(|| "-".into()),
                        time(s.created_at),
                        time(s.ends_at),
                    ]);
                }
                t.print();
            }
        }
        SessionCommand::End { id } => {
            backend.end_session(&id).await?;
            say!("ended session {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyward sso status`.
/// With a server (`backend`), what it runs with; without one, the identity file here.
pub(crate) async fn sso(backend: Option<&Backend>, cmd: SsoCommand) -> Result<ExitCode> {
    let SsoCommand::Status { json } = cmd;
    let s = match backend {
        Some(b) => b.sso_status().await?,
        None => Backend::sso_status_here().await?,
    };
    if json {
        print_json(&s)?;
        return Ok(if s.configured && s.reachable {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if !s.configured {
        say!(
            "single sign-on: not configured (token sign-in {})",
            on_off(s.token_sign_in)
        );
        return Ok(ExitCode::FAILURE);
    }
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    say!("issuer:          {}", shown(&s.issuer));
    say!("client id:       {}", shown(&s.client_id));
    say!("redirect url:    {}", shown(&s.redirect_url));
    say!("id token algs:   {}", s.id_token_algs.join(", "));
    say!("rules:           {}", s.rules);
    say!("token sign-in:   {}", on_off(s.token_sign_in));
    if s.reachable {
        say!(
            "provider:        answers; signing keys {}",
            s.key_ids.join(", ")
        );
        say!(
            "sign-out:        {}",
            if s.logout_at_provider {
                "here and at the provider"
            } else {
                "here only (the provider offers no end-session endpoint)"
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        say!("provider:        does not answer: {}", shown(&s.error));
        Ok(ExitCode::FAILURE)
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The STATE column of a token listing: the one rule, from the token's own times (a server
/// of this version sends it too), so that an expired token reads `expired`.
fn token_state(
    revoked_at: Option<keyward_core::Millis>,
    expires_at: Option<keyward_core::Millis>,
) -> String {
    keyward_core::token::TokenState::of(revoked_at, expires_at, keyward_core::Millis::now())
        .as_str()
        .into()
}

/// `--expires-in 30d` in seconds.
fn expires_in_seconds(expires_in: Option<&str>) -> Result<Option<i64>> {
    expires_in
        .map(|d| {
            let d = humantime::parse_duration(d)
                .map_err(|e| anyhow!("--expires-in {d:?}: {e} (try 30d or 12h)"))?;
            Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2_000))
        })
        .transpose()
}

pub(crate) async fn gateway_token(backend: &Backend, cmd: GatewayTokenCommand) -> Result<ExitCode> {
    match cmd {
        GatewayTokenCommand::Create {
            org,
            name,
            providers,
            expires_in,
            rpm,
            tpm,
            models,
            json,
        } => {
            let org = OrgId::new(&org)?;
            let providers = keyward::parse_providers(&providers)?;
            let (token, mut view) = backend
                .create_gateway_token(
                    &org,
                    &name,
                    &providers,
                    rpm,
                    expires_in_seconds(expires_in.as_deref())?,
                )
                .await?;
            if !models.is_empty() || tpm.is_some() {
                view = backend
                    .update_gateway_token(&view.id, Some(models), None, Some(tpm))
                    .await?;
            }
            if json {
                let mut v = serde_json::to_value(&view)?;
                v["token"] = serde_json::Value::String(token.expose_secret().to_owned());
                print_json(&v)?;
            } else {
                say!("{}", token.expose_secret());
                eprintln!(
                    "created gateway token '{}' for {} (id {}); it is shown only now",
                    view.name, view.org, view.id
                );
            }
        }
        GatewayTokenCommand::Update {
            id,
            models,
            rpm,
            tpm,
            json,
        } => {
            let per_minute = |v: Option<String>| -> Result<Option<Option<i64>>> {
                v.map(|v| match v.as_str() {
                    "none" => Ok(None),
                    n => n
                        .parse::<i64>()
                        .map(Some)
                        .map_err(|_| anyhow::anyhow!("{n:?} is not a number (or none)")),
                })
                .transpose()
            };
            let models = models.map(|m| {
                if m.len() == 1 && m[0] == "any" {
                    Vec::new()
                } else {
                    m
                }
            });
            let view = backend
                .update_gateway_token(&id, models, per_minute(rpm)?, per_minute(tpm)?)
                .await?;
            if json {
                print_json(&view)?;
            } else {
                eprintln!(
                    "gateway token '{}' may use {}; {} requests and {} tokens a minute",
                    view.name,
                    if view.models.is_empty() {
                        "any model".to_owned()
                    } else {
                        view.models.join(", ")
                    },
                    view.rpm
                        .map_or_else(|| "any number of".to_owned(), |n| n.to_string()),
                    view.tpm
                        .map_or_else(|| "any number of".to_owned(), |n| n.to_string()),
                );
            }
        }
        GatewayTokenCommand::List { org, json } => {
            let org = org.as_deref().map(OrgId::new).transpose()?;
            let tokens = backend.list_gateway_tokens(org.as_ref()).await?;
            if json {
                print_json(&tokens)?;
            } else {
                let mut t = Table::new([
                    "ID",
                    "NAME",
                    "ORG",
                    "PREFIX",
                    "PROVIDERS",
                    "RPM",
                    "EXPIRES",
                    "STATE",
                ]);
                for v in tokens {
                    t.row([
                        v.id,
                        v.name,
                        v.org.to_string(),
                        format!("{}...", v.prefix),
                        if v.providers.is_empty() {
                            "all".into()
                        } else {
                            v.providers.join(",")
                        },
                        v.rpm.map_or_else(|| "-".into(), |r| r.to_string()),
                        v.expires_at.map_or_else(|| "never".into(), time),
                        token_state(v.revoked_at, v.expires_at),
                    ]);
                }
                t.print();
            }
        }
        GatewayTokenCommand::Revoke { id } => {
            let view = backend.revoke_gateway_token(&id).await?;
            say!("revoked gateway token {} ({})", view.id, view.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
