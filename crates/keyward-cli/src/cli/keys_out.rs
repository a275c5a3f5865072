//! Keys out: `keyward resolve`, `keyward env` and `keyward run`.

use clap::Args;

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
