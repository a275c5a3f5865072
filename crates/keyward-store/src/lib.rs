//! Keyward's vault on `sqlx`: SQLite (embedded, the default) or PostgreSQL.
//!
//! [`Vault`] is the one entry point. It owns the connection pool, the master keyring and the
//! audit chain key, and runs the domain rules of `keyward-core` against the database:
//!
//! - `orgs`: organizations.
//! - `creds`: credentials (create, list, update with compare-and-set, delete).
//! - `vars`: config variables.
//! - `resolve`: resolution with its in-process cache (`cache`).
//! - `audit`: the append-only, HMAC-chained event log; every write of a secret appends its
//!   event in the same transaction, so a write whose event cannot be stored does not happen.
//! - `keys`: master-key status, start-up checks, and resumable rotation.
//! - `masters`: master keys wrapped by a KMS, read before the vault opens.
//!
//! Every table and statement works on both databases; see `migrations/`.

mod actor;
mod audit;
mod backup;
mod budgets;
mod cache;
mod changes;
mod commit;
mod creds;
mod db;
mod gateway_tokens;
mod health;
mod keys;
mod masters;
mod orgs;
mod resolve;
mod retention;
mod sessions;
mod spend;
mod tokens;
mod usage;
mod vars;

use std::sync::Arc;

use keyward_core::CoreError;
use keyward_core::resolve::NotFound;
use keyward_crypto::{ChainKey, CryptoError, Keyring};
use sqlx::AnyPool;

pub use actor::{as_person, for_request};
pub use audit::{EventPage, SCAN_BUDGET, VerifyReport};
pub use backup::{BackupHeader, master_keys_in_backup};
pub use budgets::{
    Basis, Budget, BudgetScope, LEASE_TTL_MS, LeaseGrant, LeaseReport, Metric, NewBudget, Period,
};
pub use changes::KeyNote;
pub use creds::{CredentialSort, check_secret};
pub use db::{Backend, Location};
pub use gateway_tokens::{GATEWAY_TOKEN_PREFIX, GatewayTokenView};
pub use keys::{KeyStatus, KidCount, ReencryptReport, RotationProgress, RotationReport};
pub use masters::{StoredKeys, StoredMasterKey, insert_first_master_key, read_master_keys};
pub use orgs::Organization;
pub use resolve::{CandidateSource, EnvSource, GatewayCandidate, GatewayCandidates};
pub use retention::{AuditPolicy, PruneReport, ShippedEvent, SinkCursor, StoredPolicy};
pub use sessions::{
    SESSIONS_PER_TOKEN, SSO_LOGINS_KEPT, Session, SessionLimits, SessionView, SsoLogin,
};
pub use spend::{SpendDelta, SpendDim, SpendQuery, SpendRow};
pub use tokens::{API_TOKEN_PREFIX, Person, Principal, Role, RoleGrant, TokenView};
pub use usage::{HOUR_MS, Usage, UsageBucket, UsageDelta, UsageSubject};
pub use vars::VarValue;

/// Everything the vault can refuse or fail with. No variant ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Bad input; the message says what was expected.
    #[error("{0}")]
    InvalidInput(String),
    /// A key failed its provider's format check; the caller may skip the check (each surface
    /// says how).
    #[error("{0}")]
    KeyFormat(String),
    /// The thing named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The thing named exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A compare-and-set update lost: the record changed since it was read.
    #[error(
        "credential {id} was changed concurrently (expected version {expected}, found {found}); read it again and retry"
    )]
    Conflict {
        /// The record.
        id: String,
        /// The version the caller based its change on.
        expected: i64,
        /// The version now stored (0 if it was deleted).
        found: i64,
    },
    /// Resolution found nothing.
    #[error(transparent)]
    NoCredential(#[from] NotFound),
    /// The record cannot be opened with the configured master keys.
    #[error("{0} cannot be decrypted with the configured master keys")]
    Undecryptable(String),
    /// The audit log cannot be written, so the operation was refused (fail closed).
    #[error("the audit log cannot be written, so the operation was refused: {0}")]
    AuditUnavailable(String),
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// A database statement failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Too many audit-log reads of one organization (or of all of them) are running at once;
    /// this one waited for its turn and did not get it. The store itself is fine: retry in a
    /// second. Never marks the store down.
    #[error("{0}")]
    Busy(String),
    /// The database cannot be reached right now (it is down, restarting, or out of
    /// connections); nothing was changed. Worth retrying in a few seconds.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database went away while a write was being committed: it may or may not have been
    /// saved. `id` names the record, so the caller can look before retrying.
    #[error(
        "the store went away while {what} {id} was being saved; it may or may not have been saved: look it up before retrying"
    )]
    OutcomeUnknown {
        /// What was being written (`credential`, `variable`, ...).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file-system operation failed.
    #[error("{0}")]
    Io(String),
}

impl From<sqlx::Error> for VaultError {
    fn from(e: sqlx::Error) -> Self {
        if db::is_unavailable(&e) {
            VaultError::Unavailable(db::redact_url_error(&e))
        } else {
            VaultError::Database(e)
        }
    }
}

impl VaultError {
    /// Whether this is the store being away (worth retrying soon), not a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            VaultError::Unavailable(_) | VaultError::Connect(_) | VaultError::OutcomeUnknown { .. }
        )
    }
}

impl From<CoreError> for VaultError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidInput(m)
            | CoreError::LooksLikeSecret(m)
            | CoreError::UnknownProvider(m) => VaultError::InvalidInput(m),
            CoreError::KeyFormat(m) => VaultError::KeyFormat(m),
        }
    }
}

/// Tuning knobs of a vault.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// How many (organization, provider) pairs the resolution cache holds; 0 turns it off.
    pub cache_capacity: usize,
    /// How long a cached entry is used before it is read again: the longest a write made by
    /// another process goes unseen (this process's own writes clear the cache at once).
    pub cache_ttl: std::time::Duration,
    /// Where the environment fallback of resolution reads from.
    pub env: EnvSource,
    /// The most database connections to open (default: 8 on SQLite, 16 on PostgreSQL). A
    /// one-shot command needs one, and each extra SQLite connection costs a millisecond or two
    /// to open.
    pub max_connections: Option<u32>,
    /// On PostgreSQL, listen for the changes other processes make (`LISTEN keyward_changes`)
    /// and clear the resolution cache when one arrives, so a replica stops using a deactivated
    /// key at once rather than after `cache_ttl`. For long-running processes (`keyward serve`);
    /// it holds one extra connection.
    pub listen_for_changes: bool,
    /// The longest wait for a database connection before an operation is answered with
    /// [`VaultError::Unavailable`] (default: 10 s on SQLite, where it only waits for this
    /// process's other users, and 2 s on PostgreSQL, where it means the server is away).
    pub acquire_timeout: Option<std::time::Duration>,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 10_000,
            cache_ttl: std::time::Duration::from_secs(1),
            env: EnvSource::Process,
            max_connections: None,
            listen_for_changes: false,
            acquire_timeout: None,
        }
    }
}

/// The vault: storage, keys, audit chain and resolution cache. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Vault {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: AnyPool,
    backend: Backend,
    keyring: Keyring,
    /// `None` when the stored chain key cannot be unwrapped with the configured keys: every
    /// audited operation is then refused.
    chain: Option<ChainKey>,
    cache: cache::ResolveCache,
    env: EnvSource,
    resolutions_ok: std::sync::atomic::AtomicU64,
    resolutions_failed: std::sync::atomic::AtomicU64,
    /// Group commit: the open batch's transaction and the queue of operations waiting for
    /// its commit. Writers take turns in it (SQLite has one writer at a time, and waiting
    /// here beats SQLite's busy handler, which sleeps in growing steps when writers collide).
    commits: commit::GroupCommit,
    /// API tokens that checked out recently (by hash).
    principals: tokens::PrincipalCache,
    /// This process's name in change notifications, so that it skips its own.
    instance: String,
    /// The task listening for other processes' changes, if any.
    listener: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// What other replicas announce about keys, for this process's gateway.
    notes: tokio::sync::broadcast::Sender<changes::KeyNote>,
    /// Whether the database is known to be away, and whether a task is watching for its return.
    health: health::Health,
    /// The lanes audit-log listings run in, so that one organization's reads cannot take
    /// another's connections.
    audit_lanes: audit::Lanes,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get() {
            task.abort();
        }
    }
}

/// Counters of this process's vault, for metrics.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct VaultStats {
    /// Audited resolutions that handed a key out.
    pub resolutions_ok: u64,
    /// Audited resolutions that found nothing.
    pub resolutions_failed: u64,
    /// Batches committed by group commit (each one transaction, one flush).
    pub commit_batches: u64,
    /// Operations (audited reads and writes) answered from those batches.
    pub committed_operations: u64,
}

impl Vault {
    /// Opens (creating if needed) the vault at `location`, runs migrations, and makes sure the
    /// audit chain key exists.
    pub async fn open(
        location: &Location,
        keyring: Keyring,
        options: VaultOptions,
    ) -> Result<Self, VaultError> {
        let (pool, backend) =
            db::connect(location, options.max_connections, options.acquire_timeout).await?;
        let (chain, new_store) = audit::load_or_create_chain_key(&pool, &keyring).await?;
        let vault = Self {
            inner: Arc::new(Inner {
                pool,
                backend,
                keyring,
                chain,
                cache: cache::ResolveCache::new(options.cache_capacity, options.cache_ttl),
                env: options.env,
                resolutions_ok: Default::default(),
                resolutions_failed: Default::default(),
                commits: commit::GroupCommit::default(),
                principals: tokens::PrincipalCache::default(),
                instance: new_id(),
                listener: std::sync::OnceLock::new(),
                notes: tokio::sync::broadcast::channel(256).0,
                health: health::Health::default(),
                audit_lanes: audit::Lanes::new(options.max_connections.unwrap_or(match backend {
                    Backend::Sqlite => 8,
                    Backend::Postgres => 16,
                })),
            }),
        };
        if options.listen_for_changes
            && backend == Backend::Postgres
            && let Location::Url(url) = location
        {
            changes::listen(&vault, url).await?;
        }
        if new_store {
            // The log begins here: say where the master keys live, if a KMS keeps them (its
            // first key was stored before there was a log to record it in).
            vault.record_kms_keys_of_new_store().await?;
        }
        Ok(vault)
    }

    /// A number that grows whenever the keys this vault serves may have changed: a write in
    /// this process or, when listening, in another. Holders of derived caches compare it.
    pub fn generation(&self) -> u64 {
        self.inner.cache.generation()
    }

    /// A number that grows whenever a token may have been revoked (here or, when listening,
    /// in another process), or everything was replaced; token caches compare it, and drop
    /// what they hold when it moves. Other writes leave it alone.
    pub fn token_generation(&self) -> u64 {
        self.inner.cache.token_generation()
    }

    /// What was checked before this instant is not fresh (change notifications were
    /// interrupted), though it may serve while the store is away. Holders of derived caches
    /// compare their entries' times with it.
    pub fn fresh_after(&self) -> Option<std::time::Instant> {
        self.inner.cache.fresh_after()
    }

    /// How long a resolution this vault answers may be kept before it is read again (zero
    /// when it keeps none): the bound a client's own cache of its answers keeps to.
    pub fn cache_ttl(&self) -> std::time::Duration {
        self.inner.cache.ttl()
    }

    /// Which database this vault runs on.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The configured master keys.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The connection pool, for tests and tools that need to look at the raw data.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// This process's counters.
    pub fn stats(&self) -> VaultStats {
        use std::sync::atomic::Ordering::Relaxed;
        VaultStats {
            resolutions_ok: self.inner.resolutions_ok.load(Relaxed),
            resolutions_failed: self.inner.resolutions_failed.load(Relaxed),
            commit_batches: self.inner.commits.batches.load(Relaxed),
            committed_operations: self.inner.commits.operations.load(Relaxed),
        }
    }

    /// Closes the connection pool (and stops listening for changes).
    pub async fn close(&self) {
        if let Some(task) = self.inner.listener.get() {
            task.abort();
        }
        self.inner.pool.close().await;
    }
}

/// Maps a unique-constraint violation to [`VaultError::AlreadyExists`].
fn map_unique(e: sqlx::Error, what: impl FnOnce() -> String) -> VaultError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => VaultError::AlreadyExists(what()),
        _ => e.into(),
    }
}

/// A new random record id: a UUIDv7, so ids sort by creation time.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn bool_to_db(b: bool) -> i64 {
    i64::from(b)
}
