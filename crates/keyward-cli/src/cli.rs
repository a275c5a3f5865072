//! The command line, as clap types. Parsing only; `main.rs` runs the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keyward: a vault for LLM provider API keys.
///
/// Works on the local data directory (SQLite by default, or PostgreSQL with --database-url).
/// Secrets are never taken as arguments: they come from standard input (a hidden prompt on a
/// terminal) or from an environment variable you name.
#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    propagate_version = true,
    after_help = "Environment:
  KEYWARD_MASTER_KEY_FILE   a file holding the master key (BASE64, or KID:BASE64[,KID:BASE64...])
  KEYWARD_MASTER_KEY        the master key itself (base64; `keyward keygen` makes one)
  KEYWARD_MASTER_KEYS       several keys, KID:BASE64,... (the first is primary)
                            (none of these: a development key in the data directory, with a warning)
  KEYWARD_DATA_DIR          the data directory (default ./keyward-data)
  KEYWARD_DATABASE_URL      a PostgreSQL (or SQLite) URL instead of the data directory's SQLite file
  KEYWARD_URL, KEYWARD_TOKEN  remote mode: commands ask this server, with this API token
  KEYWARD_ADMIN_TOKEN       `serve`: the first admin token, instead of printing a new one
  KEYWARD_ACTOR             who the audit log says ran a local command (default: your login name)
  KEYWARD_LOG               log filter (default warn)"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Data directory: the SQLite database and, without a configured master key, the
    /// development key.
    #[arg(
        long,
        global = true,
        env = "KEYWARD_DATA_DIR",
        hide_env_values = true,
        default_value = "keyward-data"
    )]
    pub(crate) data_dir: PathBuf,
    /// Database URL (postgres://... or sqlite:...); overrides the SQLite file in --data-dir.
    #[arg(
        long,
        global = true,
        env = "KEYWARD_DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,
    /// Refuse to run without a configured master key (no development key).
    #[arg(long, global = true, env = "KEYWARD_PRODUCTION")]
    pub(crate) production: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the Keyward server (admin API and gateway) until SIGINT or SIGTERM; SIGHUP reloads
    /// the gateway's static targets.
    Serve(ServeArgs),
    /// Print a new random 256-bit master key (base64).
    Keygen,
    /// API tokens for the server.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The gateway: reload its static targets, see its usage.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Gateway tokens: what LLM clients send to the gateway instead of a provider key.
    #[command(subcommand, name = "gateway-token")]
    GatewayToken(GatewayTokenCommand),
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Provider credentials.
    #[command(subcommand)]
    Cred(CredCommand),
    /// Config variables.
    #[command(subcommand)]
    Var(VarCommand),
    /// Print an organization's key for a provider (audited).
    Resolve(ResolveArgs),
    /// Print the provider variables of an organization, for tooling that needs them once
    /// (audited like a resolution).
    Env(EnvArgs),
    /// Run a command with the organization's provider variables and resolved `keyward://`
    /// references in its environment, masking the secrets in its output.
    Run(RunArgs),
    /// Master keys: status and rotation.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    /// The audit log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Import keys from where they are today (.env files, the environment, LiteLLM, Open
    /// Notebook, Fernet-encrypted rows). Prints the plan with --dry-run; a second import of the
    /// same source changes nothing.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Write a consistent snapshot of the whole store to FILE while the server keeps running;
    /// its secrets stay sealed under the master keys, exactly as stored.
    Backup {
        /// Where to write it: a file (created with mode 0600, or replaced when whole), or a
        /// stream written directly (`-` for standard output, a FIFO, /dev/stdout).
        file: std::path::PathBuf,
        /// Back up a store that still holds legacy plain-text rows (they are in the file as
        /// they are in the store: run `keyward reencrypt` first instead).
        #[arg(long)]
        include_plaintext: bool,
    },
    /// Restore a backup into an empty store (refused otherwise, unless --force), then verify
    /// the audit chain and open every credential.
    Restore {
        /// The backup file (`-` for standard input).
        file: std::path::PathBuf,
        /// Replace what the store holds.
        #[arg(long)]
        force: bool,
    },
    /// The store itself: copy it to another database (the way from the embedded SQLite to
    /// PostgreSQL).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Seal every row an external migration wrote in plain text (`legacy_plaintext` in
    /// listings), in batches, each audited; safe to stop and run again.
    Reencrypt,
    /// The providers Keyward knows.
    Providers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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

/// A duration such as `30s` or `2m`, more than zero.
fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
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

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Create an organization.
    Create {
        /// Slug: lowercase letters, digits, '.', '_', '-'.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// How to pick among several active keys of one provider: priority (lowest number
        /// first, the others fail over), round_robin or weighted.
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Set how an organization picks among several active keys of one provider (resolutions
    /// that do not say, and the gateway).
    SetStrategy {
        /// Organization slug.
        slug: String,
        /// priority, round_robin or weighted.
        strategy: String,
    },
    /// Set whether an organization's resolutions fall back to the environment when it has no
    /// active credential for a provider: on, off, or default (on for the CLI and library, the
    /// server's --env-fallback for a server).
    SetEnvFallback {
        /// Organization slug.
        slug: String,
        /// on, off or default.
        #[arg(value_parser = ["on", "off", "default"])]
        setting: String,
    },
    /// List organizations.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SecretSource {
    /// Read the secret from this environment variable instead of standard input. For Vertex
    /// the secret is the service-account JSON.
    #[arg(long, value_name = "VAR")]
    pub(crate) api_key_env: Option<String>,
    /// Accept a key that does not look like the provider's.
    #[arg(long)]
    pub(crate) no_format_check: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CredCommand {
    /// Add a credential; the secret is read from standard input or --api-key-env.
    Add {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Provider id (see `keyward providers`).
        #[arg(long)]
        provider: String,
        /// Name, unique per organization and provider.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        secret: SecretSource,
        /// API base URL.
        #[arg(long)]
        base_url: Option<String>,
        /// What it may be used for: chat, completions, embeddings, images, audio,
        /// speech_to_text, text_to_speech, rerank, moderation (Open Notebook's language and
        /// embedding too), comma-separated; none for all.
        #[arg(long, visible_alias = "modality", value_delimiter = ',')]
        modalities: Vec<String>,
        /// A provider field, e.g. --set endpoint=https://x.openai.azure.com (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        /// Lower is tried first.
        #[arg(long, default_value_t = 100)]
        priority: i64,
        /// Share under the weighted strategy.
        #[arg(long, default_value_t = 1)]
        weight: i64,
        /// Store it deactivated.
        #[arg(long)]
        inactive: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List credentials, masked.
    List {
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one credential, masked.
    Show {
        /// Credential id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a credential. With --rotate-key, the new secret is read like `cred add` reads it.
    Update {
        /// Credential id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// Replace the secret.
        #[arg(long)]
        rotate_key: bool,
        #[command(flatten)]
        secret: SecretSource,
        /// New base URL (empty removes it).
        #[arg(long)]
        base_url: Option<String>,
        /// New modalities.
        #[arg(long, visible_alias = "modality", value_delimiter = ',')]
        modalities: Option<Vec<String>>,
        /// Set a provider field; an empty value removes it (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        /// New priority.
        #[arg(long)]
        priority: Option<i64>,
        /// New weight.
        #[arg(long)]
        weight: Option<i64>,
        /// Only apply if the credential is still at this version.
        #[arg(long)]
        if_version: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let resolution use a credential.
    Activate {
        /// Credential id.
        id: String,
    },
    /// Stop resolution from using a credential.
    Deactivate {
        /// Credential id.
        id: String,
    },
    /// Delete a credential.
    Delete {
        /// Credential id.
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Check a key against its provider's cheap authenticated endpoint (audited; the result
    /// is stored on the credential).
    Test {
        /// Credential id.
        id: String,
        /// Seconds to wait for the provider.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VarCommand {
    /// Create or replace a variable; the value is read from standard input or --value-env.
    Set {
        /// Name: ASCII letters, digits, '_', '-', '.'.
        name: String,
        /// The organization it belongs to (global without).
        #[arg(long)]
        org: Option<String>,
        /// Encrypt the value and redact it everywhere.
        #[arg(long)]
        sensitive: bool,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Read the value from this environment variable.
        #[arg(long, value_name = "VAR")]
        value_env: Option<String>,
    },
    /// Print a variable (the organization's own, else the global one).
    Get {
        /// Name.
        name: String,
        /// Organization.
        #[arg(long)]
        org: Option<String>,
        /// Print a sensitive value (audited).
        #[arg(long)]
        reveal: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List variables, sensitive values redacted.
    List {
        /// Only this organization's (global ones with --org '').
        #[arg(long)]
        org: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a variable.
    Delete {
        /// Name.
        name: String,
        /// Organization (global without).
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// Organization.
    #[arg(long)]
    pub(crate) org: String,
    /// Provider id.
    #[arg(long)]
    pub(crate) provider: String,
    /// Only the credential with this name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only credentials usable for this modality.
    #[arg(long)]
    pub(crate) modality: Option<String>,
    /// priority, round_robin or weighted (default: the organization's setting).
    #[arg(long)]
    pub(crate) strategy: Option<String>,
    /// Do not fall back to this process's environment variables.
    #[arg(long)]
    pub(crate) no_env_fallback: bool,
    /// Print JSON with the key, its fields and where it came from.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Output formats of `keyward env`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum EnvFormat {
    /// `NAME="value"` lines, as `.env` files hold them.
    Dotenv,
    /// `export NAME='value'` lines, for `eval`.
    Shell,
    /// One JSON object.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct EnvArgs {
    /// Organization.
    #[arg(long)]
    pub(crate) org: String,
    /// Only these providers (default: every provider with an active credential).
    #[arg(long, value_delimiter = ',')]
    pub(crate) provider: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "dotenv")]
    pub(crate) format: EnvFormat,
    /// Do not fall back to this process's environment for providers without a credential.
    #[arg(long)]
    pub(crate) no_env_fallback: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Organization whose provider variables to add.
    #[arg(long)]
    pub(crate) org: Option<String>,
    /// Only these providers (default: every provider with an active credential).
    #[arg(long, value_delimiter = ',')]
    pub(crate) provider: Vec<String>,
    /// Read variables (and `keyward://` references) from this file too (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(crate) env_file: Vec<std::path::PathBuf>,
    /// Do not mask secrets in the command's output (its terminal stays a terminal).
    #[arg(long)]
    pub(crate) no_masking: bool,
    /// Variables already set (in the environment or an env file) win over Keyward's.
    #[arg(long)]
    pub(crate) no_override: bool,
    /// Do not fall back to this process's environment for the providers named with
    /// --provider that have no credential (the error says which).
    #[arg(long)]
    pub(crate) no_env_fallback: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MasterKeyCommand {
    /// How many records each master key id wraps.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrap every data key under the primary master key (resumable).
    ///
    /// Refused when the primary key was given only in an environment variable, which may exist
    /// nowhere else: use --new-key-file, or KEYWARD_MASTER_KEY_FILE.
    Rotate {
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Make a new master key, write it to this file (mode 0600; the file must not exist)
        /// and read it back before anything is rewrapped, then rotate to it. The keys
        /// configured now stay as they are. Afterwards set KEYWARD_MASTER_KEY_FILE=PATH.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<std::path::PathBuf>,
        /// The new key's id (with --new-key-file); by default `k-` and today's date and time.
        #[arg(long, requires = "new_key_file")]
        kid: Option<String>,
        /// Rotate to a primary key given only in an environment variable, on your word that it
        /// is saved elsewhere (a secret manager). If it is not, the vault is lost with it.
        #[arg(long)]
        danger_primary_key_saved_elsewhere: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// The newest audit events.
    List {
        /// KEY=VALUE[,KEY=VALUE]: category, org, action, outcome, actor.
        #[arg(long, default_value = "")]
        filter: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the HMAC chain of the whole log.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What every import takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// The organization to import into.
    #[arg(long)]
    pub(crate) org: String,
    /// Print what would be created, updated or left alone, and why; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Import nothing if any record cannot be imported.
    #[arg(long)]
    pub(crate) atomic: bool,
    /// Store keys that do not look like their provider's.
    #[arg(long)]
    pub(crate) no_format_check: bool,
}

/// How variables that are no provider's are taken.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportVarArgs {
    /// The name of the credentials made (one per provider).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Store variables whose names look secret (*_KEY, *_TOKEN, *_SECRET, *PASSWORD*)
    /// encrypted (--sensitive-vars=false to store them plain).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) sensitive_vars: bool,
    /// Import only provider credentials; leave other variables alone.
    #[arg(long)]
    pub(crate) only_providers: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImportCommand {
    /// Provider variables of .env files become credentials (grouped as the registry says:
    /// AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT and OPENAI_API_VERSION make one),
    /// the others config variables. Later files win.
    Dotenv {
        /// The files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        #[command(flatten)]
        common: ImportArgs,
        #[command(flatten)]
        vars: ImportVarArgs,
    },
    /// The same, from this process's environment (provider variables only unless
    /// --include-vars NAME is given for others).
    Env {
        #[command(flatten)]
        common: ImportArgs,
        /// The name of the credentials made.
        #[arg(long)]
        name: Option<String>,
        /// Other variables to import as config variables (repeatable).
        #[arg(long = "include-var", value_name = "NAME")]
        include_vars: Vec<String>,
    },
    /// LiteLLM's proxy config: model_list[].litellm_params (api_key literal or
    /// os.environ/VAR, api_base, api_version, the provider from the model's prefix) and
    /// credential_list[]; entries sharing a key become one credential.
    Litellm {
        /// The config.yaml.
        file: std::path::PathBuf,
        #[command(flatten)]
        common: ImportArgs,
    },
    /// Open Notebook's credentials: the rows of its `credential` table as JSON (in SurrealDB:
    /// `SELECT * FROM credential;`, see the README), their `api_key` decrypted as Open
    /// Notebook does it, under the passphrase in the variable named.
    OpenNotebook {
        /// The JSON export.
        file: std::path::PathBuf,
        /// The variable holding OPEN_NOTEBOOK_ENCRYPTION_KEY's value.
        #[arg(
            long,
            value_name = "VAR",
            default_value = "OPEN_NOTEBOOK_ENCRYPTION_KEY"
        )]
        encryption_key_env: String,
        #[command(flatten)]
        common: ImportArgs,
    },
    /// Provider credential rows (CSV with a header, or JSON: organization_id, provider,
    /// credential_name, api_key, api_base, is_active) whose api_key is a Fernet token under
    /// the key in the variable named (the admin guide's MASTER_KEY scheme).
    Fernet {
        /// The CSV or JSON file.
        file: std::path::PathBuf,
        /// The variable holding the Fernet key (urlsafe base64 of 32 bytes).
        #[arg(long, value_name = "VAR", default_value = "MASTER_KEY")]
        key_env: String,
        #[command(flatten)]
        common: ImportArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy a whole store (ids, versions, timestamps, the audit chain) into an empty one, then
    /// check the copy: the same rows in every table, the chain verifying, every credential
    /// opening. Both open with the configured master keys.
    Copy {
        /// The source: a postgres:// or sqlite:// URL, or a SQLite file.
        #[arg(long)]
        from: String,
        /// The target, which must be empty (unless --force).
        #[arg(long)]
        to: String,
        /// Replace what the target holds.
        #[arg(long)]
        force: bool,
    },
}
