//! The command line, as clap types. Parsing only; `main.rs` runs the commands. The
//! subcommands' types are in one module per group.

mod import;
mod keys_out;
mod server;
mod spend;
mod vault;

pub(crate) use import::*;
pub(crate) use keys_out::*;
pub(crate) use server::*;
pub(crate) use spend::*;
pub(crate) use vault::*;

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
  KEYWARD_KMS               the KMS that keeps the master keys, wrapped, in the store (--kms):
                            transit:KEY (OpenBao/Vault; VAULT_ADDR, VAULT_TOKEN or auth=approle),
                            aws-kms:KEY (AWS_REGION, AWS_ACCESS_KEY_ID...), pkcs11:module=...,token=...,key=...
  KEYWARD_MASTER_KEY_FILE   a file holding the master key (BASE64, or KID:BASE64[,KID:BASE64...])
  KEYWARD_MASTER_KEY        the master key itself (base64; `keyward keygen` makes one)
  KEYWARD_MASTER_KEYS       several keys, KID:BASE64,... (the first is primary)
                            (none of these: a development key in the data directory, with a warning)
  KEYWARD_DATA_DIR          the data directory (default ./keyward-data)
  KEYWARD_DATABASE_URL      a PostgreSQL (or SQLite) URL instead of the data directory's SQLite file
  KEYWARD_URL, KEYWARD_TOKEN  remote mode: commands ask this server, with this API token
  KEYWARD_TOKEN_FILE        remote mode: a file holding the token, read at every call (a
                            workload's projected token, which rotates)
  KEYWARD_ADMIN_TOKEN       `serve`: the first admin token, instead of printing a new one
  KEYWARD_IDENTITY_CONFIG   `serve`, `sso status`: the identity file (console single sign-on with
                            OpenID Connect, workload identity rules)
  KEYWARD_UI_TOKEN_SIGN_IN  `serve`: on or off, whether the console also takes API tokens
  KEYWARD_ACTOR             who the audit log says ran a local command (default: your login name)
  KEYWARD_LOG               log filter (default warn; `serve` also logs keyward::access at info)
  KEYWARD_LOG_FORMAT        text or json (JSON lines)"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people: one line an event.
    Text,
    /// JSON lines, for log collectors: `timestamp`, `level`, `target`, `fields`.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// How log lines (standard error) are written: text, or JSON lines for a collector.
    #[arg(
        long,
        global = true,
        env = "KEYWARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
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
    #[arg(
        long,
        global = true,
        env = "KEYWARD_PRODUCTION",
        hide_env_values = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) production: bool,
    /// The KMS that keeps the master keys: transit:KEY, aws-kms:KEY, pkcs11:... (see the
    /// Environment list of `keyward --help`, and the README).
    #[arg(long, global = true, env = "KEYWARD_KMS", hide_env_values = true)]
    pub(crate) kms: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// The server's listen certificate, to check its expiry.
    #[arg(long, env = "KEYWARD_TLS_CERT")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The server's static targets file, to check that every reference still resolves.
    #[arg(long, env = "KEYWARD_GATEWAY_CONFIG")]
    pub(crate) gateway_config: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the Keyward server (admin API and gateway) until SIGINT or SIGTERM; SIGHUP reloads
    /// the gateway's static targets.
    Serve(ServeArgs),
    /// Print a new random 256-bit master key (base64).
    Keygen,
    /// Ask a server on this machine whether it is up (`GET /healthz`): exit 0 if it answers
    /// 200 within 5 seconds, 1 otherwise. For container health checks (the image has no curl).
    Healthcheck {
        /// The address the server listens on (a wildcard address is asked on loopback).
        #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The server's certificate (the server serves TLS): asked over https.
        #[arg(long, env = "KEYWARD_TLS_CERT")]
        tls_cert: Option<std::path::PathBuf>,
    },
    /// Examine this deployment and say what is wrong, each with its fix: where the master keys
    /// come from, whether every record opens, the database and its schema, the data
    /// directory's owner and modes, the admin token, the TLS certificate's expiry, clock skew
    /// against the database, audit sinks behind, the static targets. With KEYWARD_URL, the
    /// server's own view (admin token). Exits 1 when something fails.
    Doctor(DoctorArgs),
    /// Print the shell completion script: `keyward completions bash >
    /// /usr/share/bash-completion/completions/keyward` (zsh: `_keyward` in a directory of
    /// `$fpath`; fish: `~/.config/fish/completions/keyward.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `keyward man > /usr/share/man/man1/keyward.1`.
    Man,
    /// API tokens for the server.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The console's sessions: list them, end one.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Single sign-on: whether it is configured and its identity provider answers.
    #[command(subcommand)]
    Sso(SsoCommand),
    /// The gateway: reload its static targets, see its usage.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Spend: tokens and cost the gateway's answers reported, by model, credential, gateway
    /// token or day.
    Spend(SpendArgs),
    /// The prices spend is reckoned at: list them, import LiteLLM's price file.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Budgets and limits: dollars per period, requests and tokens per minute, for an
    /// organization, a gateway token or a credential; held across replicas.
    #[command(subcommand)]
    Budget(BudgetCommand),
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
