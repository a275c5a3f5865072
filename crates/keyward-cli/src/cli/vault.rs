//! Organizations, credentials, config variables, master keys and the audit log.

use clap::{Args, Subcommand};

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
    /// List the models a key reaches: the provider's model list, through the credential's
    /// base URL (audited as `discover`).
    Models {
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
    /// With KEYWARD_KMS: make a new primary master key, wrapped by the KMS and stored wrapped.
    /// Then run `keyward master-key rotate` to rewrap the data keys under it, and restart
    /// servers so they use it.
    New {
        /// The new key's id; by default `k-` and today's date and time.
        #[arg(long)]
        kid: Option<String>,
    },
    /// With KEYWARD_KMS: retire a master key that wraps nothing any more (after `master-key
    /// rotate` moved everything to the primary): it is no longer listed, but stays wrapped in
    /// the store, so that what a server started before the change still wraps under it stays
    /// readable (a later rotation moves it). The primary is never retired.
    Retire {
        /// The key id.
        kid: String,
    },
    /// With KEYWARD_KMS: wrap every stored master key again under the KMS key's newest version
    /// (after rotating the Transit key, or pointing the AWS KMS alias at a new key). The
    /// master keys and the data stay as they are.
    RewrapKms,
    /// Move the master keys given now (KEYWARD_MASTER_KEY(S), KEYWARD_MASTER_KEY_FILE or the
    /// development key) into the KMS named by KEYWARD_KMS: each is wrapped by it and stored
    /// wrapped, under the same id. Afterwards unset the key variables and keep KEYWARD_KMS.
    AdoptKms,
    /// Leave the KMS: write the master keys it keeps to a new file (mode 0600), check it, and
    /// stop keeping them in the store. Afterwards set KEYWARD_MASTER_KEY_FILE=PATH and unset
    /// KEYWARD_KMS.
    LeaveKms {
        /// The file to write (it must not exist).
        #[arg(long, value_name = "PATH")]
        key_file: std::path::PathBuf,
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
    /// Check the HMAC chain of the whole log (from where the last prune left it).
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the audit events older than the retention the servers run with (or than
    /// --older-than), keeping the chain's proof: what is left still verifies. Refused inside
    /// an immutable policy's retention; events a sink has not delivered yet are kept. Works on
    /// the store itself (no API route deletes events).
    Prune {
        /// Remove events older than this (`90d`, `1y`); by default the audit policy's
        /// retention_days.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
