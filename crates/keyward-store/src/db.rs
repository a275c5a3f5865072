//! Connecting to SQLite or PostgreSQL and running the embedded migrations.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

use crate::VaultError;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite, one file, WAL.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The last migration this build knows.
pub(crate) fn known_migration() -> i64 {
    migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

/// The migrations, embedded in the binary. Each file serves both databases.
fn migrator() -> Migrator {
    let migration = |version, description: &'static str, sql: &'static str| {
        Migration::new(
            version,
            description.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "vault", include_str!("../migrations/0001_vault.sql")),
        migration(
            2,
            "key tests",
            include_str!("../migrations/0002_key_tests.sql"),
        ),
        migration(
            3,
            "audit head mac",
            include_str!("../migrations/0003_audit_head_mac.sql"),
        ),
        migration(
            4,
            "api tokens",
            include_str!("../migrations/0004_api_tokens.sql"),
        ),
        migration(
            5,
            "gateway tokens",
            include_str!("../migrations/0005_gateway_tokens.sql"),
        ),
        migration(
            6,
            "gateway usage",
            include_str!("../migrations/0006_gateway_usage.sql"),
        ),
        migration(
            7,
            "org strategy",
            include_str!("../migrations/0007_org_strategy.sql"),
        ),
        migration(
            8,
            "credentials listing",
            include_str!("../migrations/0008_credentials_listing.sql"),
        ),
        migration(
            9,
            "org env fallback",
            include_str!("../migrations/0009_org_env_fallback.sql"),
        ),
        migration(
            10,
            "usage provider",
            include_str!("../migrations/0010_usage_provider.sql"),
        ),
        migration(
            11,
            "ui sessions",
            include_str!("../migrations/0011_ui_sessions.sql"),
        ),
        migration(
            12,
            "usage hourly",
            include_str!("../migrations/0012_usage_hourly.sql"),
        ),
        migration(
            13,
            "legacy plaintext",
            include_str!("../migrations/0013_legacy_plaintext.sql"),
        ),
        migration(
            14,
            "audit indexes",
            include_str!("../migrations/0014_audit_indexes.sql"),
        ),
        migration(
            15,
            "audit checkpoint",
            include_str!("../migrations/0015_audit_checkpoint.sql"),
        ),
        migration(
            16,
            "master keys",
            include_str!("../migrations/0016_master_keys.sql"),
        ),
        migration(17, "sso", include_str!("../migrations/0017_sso.sql")),
        migration(18, "spend", include_str!("../migrations/0018_spend.sql")),
        migration(
            19,
            "budgets",
            include_str!("../migrations/0019_budgets.sql"),
        ),
        migration(
            20,
            "audit operations",
            include_str!("../migrations/0020_audit_operations.sql"),
        ),
    ])
}

/// Where the vault's data lives.
#[derive(Clone)]
pub enum Location {
    /// A SQLite database file (created with its directory if missing).
    SqliteFile(std::path::PathBuf),
    /// A database URL: `postgres://...` or `sqlite://...`.
    Url(String),
}

impl std::fmt::Debug for Location {
    /// Never prints a URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::SqliteFile(p) => f.debug_tuple("SqliteFile").field(p).finish(),
            Location::Url(url) => {
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(scheme), Some(at)) if at > scheme => {
                        format!("{}://***{}", &url[..scheme], &url[at..])
                    }
                    _ => url.clone(),
                };
                f.debug_tuple("Url").field(&shown).finish()
            }
        }
    }
}

impl Location {
    /// The default SQLite file inside a data directory.
    pub fn in_data_dir(dir: &Path) -> Self {
        Location::SqliteFile(dir.join("keyward.db"))
    }
}

pub(crate) async fn connect(
    location: &Location,
    max_connections: Option<u32>,
    acquire_timeout: Option<Duration>,
) -> Result<(AnyPool, Backend), VaultError> {
    install_default_drivers();
    let (url, backend) = match location {
        Location::SqliteFile(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    VaultError::Io(format!(
                        "cannot create data directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            // A new database file is made private (0600) before SQLite opens it: SQLite gives
            // its WAL and shared-memory files the database file's mode.
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(VaultError::Io(format!(
                            "cannot create the database {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            let path = path.to_str().ok_or_else(|| {
                VaultError::Io(format!("data path {} is not valid UTF-8", path.display()))
            })?;
            (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite)
        }
        Location::Url(url)
            if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
        {
            (url.clone(), Backend::Postgres)
        }
        Location::Url(url) if url.starts_with("sqlite:") => (url.clone(), Backend::Sqlite),
        Location::Url(_) => {
            return Err(VaultError::InvalidInput(
                "the database URL must start with postgres:// or sqlite:".into(),
            ));
        }
    };
    // On PostgreSQL a connection that cannot be had within two seconds means the server is
    // away: say so then (a 503 to retry), rather than hold every caller for ten.
    let acquire_timeout = acquire_timeout.unwrap_or(match backend {
        Backend::Sqlite => Duration::from_secs(10),
        Backend::Postgres => Duration::from_secs(2),
    });
    let mut options = AnyPoolOptions::new().acquire_timeout(acquire_timeout);
    if backend == Backend::Sqlite {
        // WAL lets readers run beside the one writer; a busy timeout makes concurrent writers
        // (the CLI beside a server) wait instead of failing; synchronous=FULL keeps every
        // acknowledged write across a power loss, not only across a crash; secure_delete
        // overwrites freed content, so a value made sensitive leaves no plain copy in free pages.
        // An embedded connection cannot go away behind our back: skip the ping that would
        // otherwise double the latency of every query.
        options = options
            .max_connections(max_connections.unwrap_or(8))
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                     PRAGMA secure_delete = ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
    } else {
        options = options.max_connections(max_connections.unwrap_or(16));
    }
    let pool = options
        .connect(&url)
        .await
        .map_err(|e| VaultError::Connect(redact_url_error(&e)))?;
    // sqlx locks migrations on PostgreSQL only: two first starts of SQLite at once would both
    // create the tables, and one fail. A lock on a file beside the database takes them in turn.
    let _turn = match sqlite_path(location) {
        Some(db) if backend == Backend::Sqlite => Some(migration_lock(&db).await?),
        _ => None,
    };
    migrator().run(&pool).await?;
    Ok((pool, backend))
}

/// The file of a SQLite database, if it is one.
fn sqlite_path(location: &Location) -> Option<std::path::PathBuf> {
    match location {
        Location::SqliteFile(path) => Some(path.clone()),
        Location::Url(url) => {
            let rest = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))?;
            let path = rest.split('?').next().unwrap_or(rest);
            (!path.is_empty() && path != ":memory:").then(|| path.into())
        }
    }
}

/// An exclusive lock on `DB.lock`, held until the returned file is dropped (the operating
/// system releases it if the process dies).
async fn migration_lock(db: &Path) -> Result<std::fs::File, VaultError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| VaultError::Io(format!("cannot lock the database for its migrations: {e}")))?
    .map_err(|e| VaultError::Io(format!("cannot lock the database for its migrations: {e}")))
}

/// Connection errors may quote the URL, and a URL may hold a password: say only what failed.
pub(crate) fn redact_url_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::Tls(_) => "TLS error".into(),
        sqlx::Error::PoolTimedOut => "timed out connecting to the database".into(),
        sqlx::Error::Configuration(_) => "invalid database URL".into(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// Whether `e` means the database is away (down, restarting, unreachable, out of
/// connections) rather than that the statement was wrong.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // Connection exceptions (08), shutdowns (57P01-57P03), too many connections (53300).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}
