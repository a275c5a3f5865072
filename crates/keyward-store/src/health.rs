//! Whether the database is reachable, as far as this process knows.
//!
//! When an operation finds the store away, the vault is marked down and one task checks every
//! half second until a trivial query answers again. Meanwhile the hot paths (the gateway's
//! token checks and key lookups, the API's token checks) do not queue for a connection that
//! will not come: they answer from what they hold, or at once with "unavailable".

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Row as _;

use crate::{Inner, Vault, VaultError};

/// How often the watcher asks the database whether it is back.
const PROBE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(crate) struct Health {
    down: AtomicBool,
    watching: AtomicBool,
}

impl Vault {
    /// Whether the store answered the last time it was asked (false from the moment an
    /// operation found it away until it answers again).
    pub fn store_available(&self) -> bool {
        !self.inner.health.down.load(Ordering::Acquire)
    }

    /// Notes that the store is away (when `e` says so) and starts watching for its return.
    pub(crate) fn note(&self, e: &VaultError) {
        if e.is_unavailable() {
            self.mark_unavailable();
        }
    }

    /// Marks the store away and starts the watcher, unless one runs.
    pub(crate) fn mark_unavailable(&self) {
        let health = &self.inner.health;
        if !health.down.swap(true, Ordering::AcqRel) {
            tracing::warn!("the store is unavailable; serving what is cached until it is back");
        }
        if health.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = std::sync::Arc::downgrade(&self.inner);
        // Outside a runtime (a synchronous caller) there is no watcher; the next operation
        // that reaches the database marks it back up.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            health.watching.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                let vault = Vault { inner };
                if vault.ping().await.is_ok() {
                    tracing::info!("the store is back");
                    vault.inner.health.watching.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// Whether the audit chain key opened with the configured master keys (every audited
    /// operation is refused otherwise).
    pub fn audit_chain_ok(&self) -> bool {
        self.inner.chain.is_some()
    }

    /// Asks the database a trivial question; marks the store up or down by the answer.
    pub async fn ping(&self) -> Result<(), VaultError> {
        match sqlx::query("SELECT 1").execute(&self.inner.pool).await {
            Ok(_) => {
                self.inner.health.down.store(false, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                let e = VaultError::from(e);
                self.note(&e);
                Err(e)
            }
        }
    }
}

impl Vault {
    /// The schema's version: the last migration applied to the database, and the last this
    /// build knows.
    pub async fn schema_version(&self) -> Result<(i64, i64), VaultError> {
        let applied: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
            .fetch_one(&self.inner.pool)
            .await?
            .try_get("v")?;
        Ok((applied.unwrap_or(0), crate::db::known_migration()))
    }

    /// How far the database's clock is from this process's (its time minus ours, in
    /// milliseconds, the round trip's half taken off); `None` on SQLite, which has no clock of
    /// its own.
    pub async fn clock_skew_ms(&self) -> Result<Option<i64>, VaultError> {
        if self.inner.backend != crate::Backend::Postgres {
            return Ok(None);
        }
        let before = keyward_core::Millis::now().0;
        let theirs: i64 =
            sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS t")
                .fetch_one(&self.inner.pool)
                .await?
                .try_get("t")?;
        let after = keyward_core::Millis::now().0;
        Ok(Some(theirs - (before + after) / 2))
    }
}
