//! Imports, backups and `store copy`.

use clap::Subcommand;

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
