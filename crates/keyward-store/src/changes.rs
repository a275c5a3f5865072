//! Telling other processes about writes: after a write commits, what it changed is dropped
//! or made stale in the caches here and, on PostgreSQL, `pg_notify('keyward_changes', ...)`
//! tells every replica listening to do the same. A notification names what changed (one
//! organization's keys, a token revoked) and carries no data; a lost one costs at most the
//! cache's time to live.
//!
//! Only what a write changed is touched, so that a write elsewhere (another organization's
//! key, a variable, which nothing caches) does not cost the gateway what it checked: the
//! README promises that it serves tokens and keys checked within `stale_for` while the
//! database is away, and that must hold right after a write too.

use std::sync::Weak;
use std::time::Duration;

use keyward_core::CredentialId;
use sqlx::postgres::PgListener;

use crate::{Backend, Inner, Vault, VaultError};

/// The channel every Keyward process on one database shares.
const CHANNEL: &str = "keyward_changes";

/// What a committed write changed, as far as the caches are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// An organization's keys or settings (`provider`: only that provider's keys).
    /// `removed`: a key was deactivated, deleted or replaced, and must never be served again,
    /// even stale; otherwise (a key added, a setting changed) the entries are made stale.
    Keys {
        org: String,
        provider: Option<String>,
        removed: bool,
    },
    /// A token (API or gateway) was revoked.
    TokenRevoked,
    /// Everything cached may be out of date but nothing was withdrawn (a rotation rewrapped
    /// every key; a batch across organizations added keys).
    ExpireAll,
    /// Everything was replaced (a restore).
    DropAll,
}

impl Change {
    /// An organization's keys changed.
    pub(crate) fn keys(org: &str, provider: Option<&str>, removed: bool) -> Self {
        Self::Keys {
            org: org.to_owned(),
            provider: provider.map(str::to_owned),
            removed,
        }
    }

    /// The notification's text after the sender's instance id (ids and provider ids hold no
    /// `:` or space).
    fn encode(&self) -> String {
        match self {
            Self::Keys {
                org,
                provider,
                removed,
            } => format!(
                "keys:{}:{org}:{}",
                if *removed { "drop" } else { "expire" },
                provider.as_deref().unwrap_or("*")
            ),
            Self::TokenRevoked => "tokens".to_owned(),
            Self::ExpireAll => "expire".to_owned(),
            Self::DropAll => "drop".to_owned(),
        }
    }

    /// The change a notification names; anything unknown (an older replica's bare id) drops
    /// everything, which is always safe.
    fn decode(text: &str) -> Self {
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("keys"), Some(how @ ("drop" | "expire")), Some(org), Some(provider))
                if !org.is_empty() && !provider.is_empty() =>
            {
                Self::keys(org, (provider != "*").then_some(provider), how == "drop")
            }
            (Some("tokens"), None, ..) => Self::TokenRevoked,
            (Some("expire"), None, ..) => Self::ExpireAll,
            _ => Self::DropAll,
        }
    }

    /// Applies the change to this process's caches.
    fn apply(&self, inner: &Inner) {
        match self {
            Self::Keys {
                org,
                provider,
                removed,
            } => inner.cache.change_org(org, provider.as_deref(), *removed),
            Self::TokenRevoked => inner.cache.revoke_tokens(),
            Self::ExpireAll => inner.cache.expire_all(),
            Self::DropAll => inner.cache.invalidate(),
        }
    }
}

/// What one replica tells the others about a key's health (the gateway's cooldowns). It is
/// no write: nothing in the database changes, so it is announced on the same channel rather
/// than committed, and lost when no replica listens. It names a credential, never a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyNote {
    /// The provider refused or rate-limited the key: set it aside until `until_ms` (Unix
    /// milliseconds); `why` is the gateway's word for it (`failing`, `rate_limited`).
    SetAside {
        credential: CredentialId,
        why: String,
        until_ms: i64,
    },
    /// The key served again.
    Recovered { credential: CredentialId },
}

impl KeyNote {
    fn encode(&self) -> String {
        match self {
            Self::SetAside {
                credential,
                why,
                until_ms,
            } => format!("aside:{credential}:{why}:{until_ms}"),
            Self::Recovered { credential } => format!("recovered:{credential}"),
        }
    }

    /// The note a notification carries, if it is one.
    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let note = match (parts.next()?, parts.next()?, parts.next(), parts.next()) {
            ("aside", id, Some(why), Some(until))
                if !why.is_empty() && why.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                Self::SetAside {
                    credential: CredentialId::new(id).ok()?,
                    why: why.to_owned(),
                    until_ms: until.parse().ok()?,
                }
            }
            ("recovered", id, None, None) => Self::Recovered {
                credential: CredentialId::new(id).ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(note)
    }
}

impl Vault {
    /// Tells the other replicas (on PostgreSQL, those listening) about a key's health; nothing
    /// on SQLite, which one process serves. Failing to announce is logged: the others then
    /// find out from the provider themselves.
    pub async fn announce(&self, note: &KeyNote) {
        if self.inner.backend == Backend::Postgres {
            let payload = format!("{} {}", self.inner.instance, note.encode());
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&self.inner.pool)
                .await
            {
                tracing::warn!(error = %e, "cannot tell other replicas about a key");
            }
        }
    }

    /// What the other replicas announce about keys ([`Vault::announce`]), as they arrive
    /// (when this vault listens for changes).
    pub fn key_notes(&self) -> tokio::sync::broadcast::Receiver<KeyNote> {
        self.inner.notes.subscribe()
    }

    /// Called after every committed write that changes what resolution, the gateway or the
    /// token checks serve, with what it changed.
    pub(crate) async fn changed(&self, change: Change) {
        change.apply(&self.inner);
        if self.inner.backend == Backend::Postgres {
            // The write has committed; failing to announce it is not a reason to report it as
            // failed. Replicas then see it when their cache entries expire.
            let payload = format!("{} {}", self.inner.instance, change.encode());
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
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
    // A lost connection is reported by `try_recv` when it happens, not after a reconnection
    // that may come seconds after the database is back (which would mark a healthy store
    // down); the loop below reconnects.
    listener.eager_reconnect(false);
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
                    let (from, what) = n.payload().split_once(' ').unwrap_or((n.payload(), ""));
                    if from == inner.instance {
                        continue;
                    }
                    if let Some(note) = KeyNote::decode(what) {
                        // Nobody subscribed (no gateway) is no error.
                        let _ = inner.notes.send(note);
                    } else {
                        tracing::debug!(change = what, "a change made elsewhere");
                        Change::decode(what).apply(&inner);
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
            // connection often means), and read again as soon as it is back. Whether the
            // database is away is the pool's to say, asked now (with eager reconnection off
            // the loss is seen when it happens): a listener that notices late must not mark a
            // store that is back as down again.
            inner.cache.expire_all();
            let vault = Vault { inner };
            if tokio::time::timeout(Duration::from_millis(500), vault.ping())
                .await
                .is_err()
            {
                vault.mark_unavailable();
            }
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

#[cfg(test)]
mod tests {
    use super::{Change, KeyNote};
    use keyward_core::CredentialId;

    #[test]
    fn key_notes_round_trip_and_nothing_else_reads_as_one() {
        let id = CredentialId::new("01a24eaf-c864-71d2-b285-49d7f4d5eab4").expect("an id");
        for note in [
            KeyNote::SetAside {
                credential: id.clone(),
                why: "rate_limited".into(),
                until_ms: 1_765_000_000_000,
            },
            KeyNote::Recovered { credential: id },
        ] {
            assert_eq!(KeyNote::decode(&note.encode()), Some(note));
        }
        for other in [
            Change::keys("acme", Some("openai"), true).encode(),
            "tokens".to_owned(),
            "aside:x:Bad Why:1".to_owned(),
            "aside:01a24eaf-c864-71d2-b285-49d7f4d5eab4:failing:soon".to_owned(),
            "recovered:01a24eaf-c864-71d2-b285-49d7f4d5eab4:extra".to_owned(),
        ] {
            assert_eq!(KeyNote::decode(&other), None, "{other}");
        }
    }
}
