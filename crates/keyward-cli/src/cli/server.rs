//! `keyward serve`, API tokens, gateway tokens and the gateway.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List the live console sessions, of tokens and of people signed in through single
    /// sign-on (admins).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a console session by its listed id, everywhere at once (audited).
    End {
        /// The session's id, as listed.
        id: String,
    },
}

/// `keyward sso ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum SsoCommand {
    /// Whether single sign-on is configured and its identity provider answers: the issuer,
    /// its signing keys, the rules. Against a server (`KEYWARD_URL`) what it runs with; here,
    /// the identity file `KEYWARD_IDENTITY_CONFIG` names.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `keyward token ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; it is printed once (with --json, in the field `token`).
    Create {
        /// admin, org_admin, viewer or resolver.
        #[arg(long)]
        role: String,
        /// The organization (every role but admin).
        #[arg(long)]
        org: Option<String>,
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// Lifetime, e.g. 30d or 12h (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never the tokens themselves).
    List {
        /// Only this organization's.
        #[arg(long)]
        org: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        /// Token id.
        id: String,
    },
}

/// `keyward serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Let organizations that have no active credential for a provider fall back to this
    /// server's own environment variables (OPENAI_API_KEY, ...), unless an organization's own
    /// setting says otherwise (`keyward org set-env-fallback`). Off by default: a multi-tenant
    /// server must not hand its own keys to every organization.
    #[arg(long, env = "KEYWARD_ENV_FALLBACK")]
    pub(crate) env_fallback: bool,
    /// Let master-key rotations (API, console) rewrap under a primary key given only in an
    /// environment variable, on your word that it is saved elsewhere.
    #[arg(long)]
    pub(crate) danger_primary_key_saved_elsewhere: bool,
    /// Address to listen on.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "KEYWARD_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "KEYWARD_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// The gateway's static targets (YAML), served at /gateway/t/{id}/...; every key
    /// reference in it must resolve, or the server does not start.
    #[arg(long, env = "KEYWARD_GATEWAY_CONFIG")]
    pub(crate) gateway_config: Option<std::path::PathBuf>,
    /// Longest wait for a connection to a provider.
    #[arg(long, env = "KEYWARD_GATEWAY_CONNECT_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub(crate) gateway_connect_timeout: std::time::Duration,
    /// Longest wait for a provider's response headers.
    #[arg(long, env = "KEYWARD_GATEWAY_FIRST_BYTE_TIMEOUT", default_value = "120s", value_parser = positive_duration)]
    pub(crate) gateway_first_byte_timeout: std::time::Duration,
    /// Longest silence within a provider's response body before it is closed.
    #[arg(long, env = "KEYWARD_GATEWAY_IDLE_TIMEOUT", default_value = "120s", value_parser = positive_duration)]
    pub(crate) gateway_idle_timeout: std::time::Duration,
    /// How long resolved keys are cached. Writes through this server clear the cache at once,
    /// and on PostgreSQL so do writes through any other replica (LISTEN/NOTIFY); the time to
    /// live bounds how long a change made some other way goes unseen.
    #[arg(long, env = "KEYWARD_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) cache_ttl: std::time::Duration,
    /// While the database is unreachable, how long the gateway keeps serving tokens and keys
    /// it checked before (0s: not at all); tokens and keys it never saw get a fast 503.
    #[arg(long, env = "KEYWARD_GATEWAY_SERVE_STALE_FOR", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) gateway_serve_stale_for: std::time::Duration,
    /// Name organizations in `/metrics`' spend counters (off by default: `/metrics` is open
    /// to anyone who reaches the server, and one organization's spend is none of another's
    /// business; turn it on where only your Prometheus reaches `/metrics`).
    #[arg(long, env = "KEYWARD_METRICS_BY_ORG", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub(crate) metrics_by_org: bool,
    /// How long a realtime (WebSocket) session through the gateway may pass no message
    /// either way before both sides are closed (1001).
    #[arg(long, env = "KEYWARD_GATEWAY_REALTIME_IDLE_TIMEOUT", default_value = "5m", value_parser = positive_duration)]
    pub(crate) gateway_realtime_idle_timeout: std::time::Duration,
    /// How long a realtime session through the gateway may last.
    #[arg(long, env = "KEYWARD_GATEWAY_REALTIME_MAX_DURATION", default_value = "60m", value_parser = positive_duration)]
    pub(crate) gateway_realtime_max_duration: std::time::Duration,
    /// Where the gateway exchanges Vertex AI service accounts for access tokens (Google's
    /// endpoint; a private one, e.g. Private Service Connect's, where that is the way out).
    /// A service-account file's own `token_uri` is never used.
    #[arg(long, env = "KEYWARD_GOOGLE_TOKEN_URL", default_value = keyward_probe::cloud::GOOGLE_TOKEN_URL, value_parser = http_url)]
    pub(crate) google_token_url: String,
    /// The Entra ID authority Azure OpenAI service principals get tokens from
    /// (`https://login.microsoftonline.us` for Azure Government, ...).
    #[arg(long, env = "KEYWARD_ENTRA_AUTHORITY", default_value = keyward_probe::cloud::ENTRA_AUTHORITY, value_parser = http_url)]
    pub(crate) entra_authority: String,
    /// Longest wait for a database connection before a request is answered with 503
    /// (default: 2s on PostgreSQL, 10s on SQLite).
    #[arg(long, env = "KEYWARD_DB_ACQUIRE_TIMEOUT", value_parser = positive_duration)]
    pub(crate) db_acquire_timeout: Option<std::time::Duration>,
    /// Failed authentications allowed per client address and minute before the address gets
    /// 429 for the rest of the minute (raise it when many clients share an address).
    #[arg(long, env = "KEYWARD_AUTH_FAILURES_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) auth_failures_per_minute: u32,
    /// The web console's sessions end after this long without a request.
    #[arg(long, env = "KEYWARD_UI_IDLE_TIMEOUT", default_value = "30m", value_parser = positive_duration)]
    pub(crate) ui_idle_timeout: std::time::Duration,
    /// The web console's sessions end this long after sign-in, whatever happens.
    #[arg(long, env = "KEYWARD_UI_SESSION_MAX", default_value = "12h", value_parser = positive_duration)]
    pub(crate) ui_session_max: std::time::Duration,
    /// Whether the console's sign-in page takes API tokens: `on` or `off` (the break-glass
    /// path beside single sign-on; by default on, unless the identity file says
    /// `token_sign_in: false`).
    #[arg(long, env = "KEYWARD_UI_TOKEN_SIGN_IN", value_parser = on_off)]
    pub(crate) ui_token_sign_in: Option<bool>,
    /// The identity file: the console's single sign-on (OpenID Connect) and the workload
    /// identity rules (see the README, "Single sign-on" and "Workload identity").
    #[arg(long, env = "KEYWARD_IDENTITY_CONFIG")]
    pub(crate) identity_config: Option<std::path::PathBuf>,
    /// Ship the audit trail, every event after it is committed, in order, to SINK (repeat the
    /// flag; comma-separated in the variable): `syslog+tcp://HOST:PORT` (RFC 5424),
    /// `syslog+unix:///dev/log`, `https://URL` (JSON lines, signed with the HMAC key) or
    /// `file:///PATH` (JSON lines). Where each sink got to is kept in the store.
    // Parsed at start, not by the argument parser, whose errors quote the value (a URL's
    // password with it).
    #[arg(
        long = "audit-sink",
        env = "KEYWARD_AUDIT_SINKS",
        value_delimiter = ','
    )]
    pub(crate) audit_sinks: Vec<String>,
    /// The file holding the key HTTP audit sinks sign with (HMAC-SHA256 over `t.body`, in
    /// the `keyward-signature` header); KEYWARD_AUDIT_SINK_HMAC_KEY holds the key itself instead.
    #[arg(long, env = "KEYWARD_AUDIT_SINK_HMAC_KEY_FILE")]
    pub(crate) audit_sink_hmac_key_file: Option<std::path::PathBuf>,
    /// Audit events older than this many days may be pruned: the server prunes them every 6
    /// hours, keeping the chain's proof (the gateway config's `audit-logger` policy may set a
    /// longer one; the longer wins).
    #[arg(long, env = "KEYWARD_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) audit_retention_days: Option<u32>,
    /// No audit event is pruned before its retention (without a retention, none ever is), by
    /// this server or by `keyward events prune`; once the store holds an immutable policy, it
    /// only tightens (a later setting that is not immutable, or shorter, leaves it as it is).
    #[arg(long, env = "KEYWARD_AUDIT_IMMUTABLE")]
    pub(crate) audit_immutable: bool,
    /// Every request of a gateway token is an audit event, committed before its answer leaves
    /// (by default a key's use is counted, and only what happens to keys is audited).
    #[arg(long, env = "KEYWARD_AUDIT_LOG_ALL_ACCESS")]
    pub(crate) audit_log_all_access: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayCommand {
    /// Reload the running server's static targets file (needs KEYWARD_URL and an admin
    /// KEYWARD_TOKEN; SIGHUP to the server does the same). If the file does not load, the
    /// server keeps its previous targets and this says why.
    Reload,
    /// What the running gateway serves: its static targets (provider, base URL, the reference
    /// each resolved), when they were last loaded, by what and with what result, and per
    /// provider the active credentials and those set aside (failing, cooling down until).
    Status {
        /// Only this organization (the default for an organization's token).
        #[arg(long)]
        org: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Gateway usage of an organization: requests by upstream status and last use, per
    /// credential, gateway token and static target.
    Usage {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayTokenCommand {
    /// Create a gateway token; it is printed once (with --json, in the field `token`).
    Create {
        /// Organization.
        #[arg(long)]
        org: String,
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// Only these providers (default: all).
        #[arg(long, value_delimiter = ',')]
        providers: Vec<String>,
        /// Lifetime, e.g. 30d or 12h (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Requests per minute it may make.
        #[arg(long)]
        rpm: Option<i64>,
        /// Tokens (input and output) per minute it may use.
        #[arg(long)]
        tpm: Option<i64>,
        /// Only these models (names, or patterns with `*`: gpt-4o*,claude-*).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change what a gateway token may do: its models, requests and tokens per minute.
    Update {
        /// The token's id.
        id: String,
        /// Only these models (names, or patterns with `*`); "any" for all.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Requests per minute, or "none".
        #[arg(long)]
        rpm: Option<String>,
        /// Tokens per minute, or "none".
        #[arg(long)]
        tpm: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List gateway tokens (never the tokens themselves).
    List {
        /// Only this organization's.
        #[arg(long)]
        org: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a gateway token.
    Revoke {
        /// Gateway token id.
        id: String,
    },
}

/// A duration such as `30s` or `2m`, more than zero.
fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// `on` or `off` (also `true`/`false`).
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

/// An http(s) URL without query or fragment.
fn http_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains(['?', '#', ' '])
        && reqwest::Url::parse(s).is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(s.trim_end_matches('/').to_owned())
    } else {
        Err("must be an http(s) URL without query or fragment".into())
    }
}
