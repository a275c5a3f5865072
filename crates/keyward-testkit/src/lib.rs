//! Helpers shared by Keyward's test suites (a dev-dependency only).
//!
//! - [`PgSchema`]: a fresh PostgreSQL schema per test on the server named by
//!   `KEYWARD_TEST_DATABASE_URL`, so tests run in parallel on one database. Without that
//!   variable the PostgreSQL half of a suite is skipped, unless `KEYWARD_TEST_REQUIRE_POSTGRES=1`
//!   (CI) makes the missing server a failure.
//! - [`PgCluster`]: a PostgreSQL server of a test's own, to stop and start (fault tests).
//! - [`contains`]: the canary scan.
//! - [`keyring`], [`keyring_of`]: test master keys.
//! - [`TestVault`]: a vault under the test master key, on SQLite in a temporary directory or
//!   on PostgreSQL in a schema of its own.
//! - [`TestServer`]: the server on 127.0.0.1 over a test vault, and a client for its API and
//!   its console; [`spawn_server`] for a test that builds its own vault.
//! - [`kms`]: real key-management servers (OpenBao, moto as AWS KMS, SoftHSM2) for the KMS
//!   suites.
//! - [`oidc`]: a real OpenID provider (`oidc-provider` on Node 22) for the OIDC suites.
//! - [`MockProvider`]: an LLM provider on 127.0.0.1 in the OpenAI, Anthropic, Gemini and Azure
//!   shapes, recording what it received, scripted with [`Reply`], streaming.

mod cluster;
pub mod kms;
mod mock_provider;
pub mod oidc;
mod server;
mod vault;

pub use cluster::PgCluster;
pub use mock_provider::{MockBuilder, MockProvider, MockUsage, Received, Reply, Shape};
pub use server::{TestServer, closed_addr, spawn_server};
pub use vault::{TEST_KEY_BYTES, TestVault, keyring, keyring_of};

use sqlx::{AnyPool, AssertSqlSafe, Executor as _};

/// A schema of its own on the test PostgreSQL server.
#[derive(Debug)]
pub struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    /// Creates `PREFIX_<random>`; `None` means "skip" (no server configured).
    ///
    /// # Panics
    ///
    /// When PostgreSQL is required but not configured or not reachable: a test environment
    /// that cannot run the suite must fail, not pass quietly.
    pub async fn create(prefix: &str) -> Option<Self> {
        let Ok(base) = std::env::var("KEYWARD_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("KEYWARD_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KEYWARD_TEST_REQUIRE_POSTGRES=1 but KEYWARD_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipping the PostgreSQL run: KEYWARD_TEST_DATABASE_URL is not set");
            return None;
        };
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the system RNG works");
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let schema = Self {
            base,
            name: format!("{prefix}_{suffix}"),
        };
        schema
            .execute(&format!("CREATE SCHEMA {}", schema.name))
            .await;
        Some(schema)
    }

    /// The database URL with this schema as the search path.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.base, self.name)
    }

    /// The schema's name, to qualify tables in raw queries.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool on the server (not bound to this schema), for raw inspection.
    pub async fn admin_pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.base)
            .await
            .expect("KEYWARD_TEST_DATABASE_URL must point at a running PostgreSQL")
    }

    /// Runs `sql` on the server; a deadlock (servers of the test still writing in the schema
    /// being dropped) is tried again, up to five times.
    async fn execute(&self, sql: &str) {
        let pool = self.admin_pool().await;
        let mut tries = 0;
        loop {
            match pool.execute(AssertSqlSafe(sql.to_owned())).await {
                Ok(_) => break,
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("40P01") && tries < 5 =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("schema statement: {e:?}"),
            }
        }
        pool.close().await;
    }

    /// Every row of every table of the vault in this schema, as text (`bytea` as hex), for
    /// canary scans.
    pub async fn dump(&self) -> Vec<u8> {
        let pool = self.admin_pool().await;
        let tables = sqlx::query(
            "SELECT CAST(table_name AS TEXT) AS t FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind(&self.name)
        .fetch_all(&pool)
        .await
        .expect("list tables");
        let mut out = Vec::new();
        for row in tables {
            let table: String = sqlx::Row::get(&row, "t");
            let rows = pool
                .fetch_all(AssertSqlSafe(format!(
                    "SELECT CAST(t.* AS TEXT) AS r FROM {}.{table} t",
                    self.name
                )))
                .await
                .expect("dump a table");
            for r in rows {
                out.extend(sqlx::Row::get::<String, _>(&r, "r").into_bytes());
                out.push(b'\n');
            }
        }
        pool.close().await;
        out
    }

    /// Drops the schema and everything in it. A test that fails before this leaves its schema
    /// behind, to be looked at.
    pub async fn drop_schema(self) {
        self.execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
}

/// Whether `needle` occurs anywhere in `hay`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Waits, if need be, until at least `room` is left in the current calendar minute (UTC): the
/// gateway's per-minute limits count calendar minutes, and a test that counts on one minute
/// must not straddle two.
pub async fn room_in_this_minute(room: std::time::Duration) {
    let now = keyward_core::Millis::now().0;
    let left = 60_000 - now.rem_euclid(60_000);
    let room = i64::try_from(room.as_millis()).unwrap_or(60_000);
    if left < room {
        tokio::time::sleep(std::time::Duration::from_millis(
            u64::try_from(left + 50).unwrap_or(0),
        ))
        .await;
    }
}
