//! Telling other processes about writes: after a write commits, the resolution cache is
//! cleared here and, on PostgreSQL, `pg_notify('keyward_changes', <instance>)` tells every
//! replica listening to clear theirs. A notification is only a signal to drop cached data;
//! it carries no data itself, so a lost one costs at most the cache's time to live.

use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::{Backend, Inner, Vault, VaultError};

/// The channel every Keyward process on one database shares.
const CHANNEL: &str = "keyward_changes";

impl Vault {
    /// Called after every committed write that changes what resolution or the gateway serves.
    pub(crate) async fn changed(&self) {
        self.inner.cache.invalidate();
        if self.inner.backend == Backend::Postgres {
            // The write has committed; failing to announce it is not a reason to report it as
            // failed. Replicas then see it when their cache entries expire.
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&self.inner.instance)
                .execute(&self.inner.pool)
                .await
            {
                tracing::warn!(error = %e, "cannot notify other replicas of a change");
            }
        }
    }
}

/// A listener on the changes channel.
async fn subscribe(url: &str) -> Result<PgListener, VaultError> {
    let mut listener = PgListener::connect(url)
        .await
        .map_err(|e| VaultError::Connect(crate::db::redact_url_error(&e)))?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Starts listening (the first connection is made before this returns, so a bad URL fails the
/// start); a task then clears the cache on every other process's notification. When the
/// listening connection fails, notifications sent meanwhile are gone: the task makes a new
/// listener (a new connection, not a retry on a socket that may be dead) and only once it
/// listens clears the cache, so that whatever changed during the gap is read afresh. The task
/// is aborted when the vault is dropped.
pub(crate) async fn listen(vault: &Vault, url: &str) -> Result<(), VaultError> {
    let mut listener = subscribe(url).await?;
    let url = url.to_owned();
    let weak: Weak<Inner> = std::sync::Arc::downgrade(&vault.inner);
    let task = tokio::spawn(async move {
        loop {
            let received = listener.try_recv().await;
            let Some(inner) = weak.upgrade() else { return };
            match received {
                Ok(Some(n)) => {
                    if n.payload() != inner.instance {
                        tracing::debug!("a change made elsewhere clears the resolution cache");
                        inner.cache.invalidate();
                    }
                    continue;
                }
                Ok(None) => tracing::warn!("change notifications were interrupted; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot receive change notifications; reconnecting");
                }
            }
            // What changed during the gap is unknown: nothing cached is fresh any more. But it
            // is kept, to serve from if the database itself is away (which a lost listening
            // connection often means), and read again as soon as it is back.
            // Down first: a request that finds its entry stale must not then queue for a
            // connection to a database that is gone.
            let vault = Vault { inner };
            vault.mark_unavailable();
            vault.inner.cache.expire_all();
            drop(vault);
            listener = loop {
                match subscribe(&url).await {
                    Ok(l) => break l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for changes; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if weak.strong_count() == 0 {
                            return;
                        }
                    }
                }
            };
            if let Some(inner) = weak.upgrade() {
                inner.cache.expire_all();
            }
        }
    });
    let _ = vault.inner.listener.set(task.abort_handle());
    Ok(())
}
