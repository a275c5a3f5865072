//! The in-process resolution cache: decrypted credentials per (organization, provider).
//!
//! Bounded by the number of pairs it holds; when full it starts over (a cheap, predictable
//! policy for a working set that is normally far below the bound). Every write to the vault
//! clears it, so a read after a write never sees stale data in this process; entries also
//! expire after a time to live, which bounds how long a write made by another process (the CLI
//! beside a server, another replica) goes unseen.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use keyward_core::credential::Modality;
use keyward_core::{CredentialId, CredentialName, Millis, OrgId, Provider};
use keyward_crypto::Keyring;
use secrecy::SecretString;
use std::collections::BTreeMap;

/// An active credential, its key still sealed until someone needs it: an organization with
/// thousands of keys costs one decryption per resolution, not thousands.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) id: CredentialId,
    pub(crate) org: OrgId,
    pub(crate) provider: &'static Provider,
    pub(crate) name: CredentialName,
    pub(crate) modalities: Vec<Modality>,
    pub(crate) fields: BTreeMap<String, String>,
    /// Where the gateway sends requests without a base URL of the credential's own
    /// ([`Provider::upstream_base_url`]).
    pub(crate) default_base_url: Option<String>,
    pub(crate) priority: i64,
    pub(crate) weight: i64,
    pub(crate) created_at: Millis,
    pub(crate) wrapped_dek: Vec<u8>,
    pub(crate) sealed_secret: Option<Vec<u8>>,
    /// A legacy row's key in plain text.
    pub(crate) plaintext_secret: Option<String>,
    /// The key once opened: `Some(key)`, or `None` when it cannot be opened.
    pub(crate) opened: OnceLock<Option<Option<SecretString>>>,
}

impl Live {
    /// From a row of `id, name, modalities, fields, priority, weight, created_at, wrapped_dek,
    /// sealed_secret` of `org`'s credentials for `provider`.
    pub(crate) fn from_row(
        row: &sqlx::any::AnyRow,
        org: &OrgId,
        provider: &'static Provider,
    ) -> Result<Self, crate::VaultError> {
        use sqlx::Row as _;
        let id: String = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        let modalities: String = row.try_get("modalities")?;
        let fields: String = row.try_get("fields")?;
        let fields: BTreeMap<String, String> = serde_json::from_str(&fields).map_err(|_| {
            crate::VaultError::InvalidInput(format!("credential {id} has malformed fields"))
        })?;
        Ok(Self {
            default_base_url: provider.upstream_base_url(&fields),
            fields,
            id: CredentialId::from_stored(&id)?,
            org: org.clone(),
            provider,
            name: CredentialName::from_stored(&name)?,
            modalities: Modality::parse_list(&modalities)?,
            priority: row.try_get("priority")?,
            weight: row.try_get("weight")?,
            created_at: Millis(row.try_get("created_at")?),
            wrapped_dek: row.try_get("wrapped_dek")?,
            sealed_secret: row.try_get("sealed_secret")?,
            plaintext_secret: row.try_get("plaintext_secret")?,
            opened: OnceLock::new(),
        })
    }

    /// The key, opened the first time it is asked for: `Ok(None)` for a credential without one
    /// (a keyless provider), `Err(())` when it cannot be decrypted (logged once).
    pub(crate) fn secret(&self, keyring: &Keyring) -> Result<Option<&SecretString>, ()> {
        let opened = self.opened.get_or_init(|| {
            match crate::creds::open_sealed(
                keyring,
                &self.id,
                &self.org,
                self.provider,
                &self.fields,
                crate::creds::Stored {
                    wrapped_dek: &self.wrapped_dek,
                    sealed: self.sealed_secret.as_deref(),
                    plaintext: self.plaintext_secret.as_deref(),
                },
            ) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    tracing::warn!(credential = %self.id, org = %self.org, error = %e, "skipping a credential that cannot be decrypted");
                    None
                }
            }
        });
        opened.as_ref().map(Option::as_ref).ok_or(())
    }
}

/// The active credentials of one (organization, provider), and the round-robin turn counter.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    /// When it was read from the database.
    pub(crate) loaded: Option<Instant>,
    pub(crate) live: Vec<Live>,
    /// The organization's strategy.
    pub(crate) strategy: keyward_core::resolve::Strategy,
    /// The organization's environment-fallback setting (`None`: the caller's default).
    pub(crate) env_fallback: Option<bool>,
    pub(crate) turn: AtomicU64,
    /// Set when a write may have changed it (a credential added, a setting changed): not fresh
    /// any more, but still what there is to serve while the store is away.
    pub(crate) expired: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
pub(crate) struct ResolveCache {
    capacity: usize,
    ttl: Duration,
    map: RwLock<HashMap<String, HashMap<&'static str, Arc<Entry>>>>,
    len: AtomicU64,
    /// Bumped by every change to what resolution serves. A loader notes it before reading the
    /// database and its result is only cached if no write happened meanwhile, so a stale read
    /// never sticks.
    generation: AtomicU64,
    /// Bumped only when a token may have been revoked (or everything dropped): the token
    /// caches (API and gateway) compare it, so a credential written elsewhere does not cost
    /// them what they checked.
    token_generation: AtomicU64,
    /// Entries loaded before this instant are no longer fresh, but are kept: when change
    /// notifications are interrupted nobody knows what changed meanwhile, so they are read
    /// again, yet while the database is away they are still the best there is
    /// ([`ResolveCache::get_stale`]).
    fresh_after: RwLock<Option<Instant>>,
}

impl ResolveCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            map: RwLock::new(HashMap::new()),
            len: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            token_generation: AtomicU64::new(0),
            fresh_after: RwLock::new(None),
        }
    }

    /// The instant before which loaded entries are not fresh, if any.
    pub(crate) fn fresh_after(&self) -> Option<Instant> {
        *self.fresh_after.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every entry loaded so far (tokens too) stale without dropping it.
    pub(crate) fn expire_all(&self) {
        *self.fresh_after.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// An entry loaded less than `max_age` ago, fresh or not: for when the database is away.
    pub(crate) fn get_stale(
        &self,
        org: &str,
        provider: &'static str,
        max_age: Duration,
    ) -> Option<Arc<Entry>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(org)?
            .get(provider)
            .filter(|e| e.loaded.is_some_and(|at| at.elapsed() < max_age))
            .cloned()
    }

    pub(crate) fn get(&self, org: &str, provider: &'static str) -> Option<Arc<Entry>> {
        if self.capacity == 0 {
            return None;
        }
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is always in a consistent state, so keep using it.
        let fresh_after = self.fresh_after();
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(org)?
            .get(provider)
            .filter(|e| {
                !e.expired.load(std::sync::atomic::Ordering::Acquire)
                    && e.loaded.is_some_and(|at| {
                        at.elapsed() < self.ttl && fresh_after.is_none_or(|after| at > after)
                    })
            })
            .cloned()
    }

    /// How long an entry is used before it is read again; zero when caching is off.
    pub(crate) fn ttl(&self) -> Duration {
        if self.capacity == 0 {
            Duration::ZERO
        } else {
            self.ttl
        }
    }

    /// The generation to pass to [`ResolveCache::insert`]; read it before loading.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn insert(
        &self,
        org: &str,
        provider: &'static str,
        entry: Arc<Entry>,
        loaded_at: u64,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if self.generation() != loaded_at {
            return;
        }
        if self.len.load(Relaxed) as usize >= self.capacity {
            map.clear();
            self.len.store(0, Relaxed);
        }
        if map
            .entry(org.to_owned())
            .or_default()
            .insert(provider, entry)
            .is_none()
        {
            self.len.fetch_add(1, Relaxed);
        }
    }

    /// The generation of the token caches; see [`ResolveCache::revoke_tokens`].
    pub(crate) fn token_generation(&self) -> u64 {
        self.token_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A token may have been revoked: every cached token is checked again, and none is
    /// served stale.
    pub(crate) fn revoke_tokens(&self) {
        self.token_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// One organization's keys changed (`provider`: only that provider's). `removed`: a key
    /// was deactivated, deleted or replaced, so the entries are dropped and never served
    /// again, even while the store is away; otherwise they are only made stale.
    pub(crate) fn change_org(&self, org: &str, provider: Option<&str>, removed: bool) {
        use std::sync::atomic::Ordering;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        let Some(entries) = map.get_mut(org) else {
            return;
        };
        let hit = |p: &str| provider.is_none_or(|want| want == p);
        if removed {
            let before = entries.len();
            entries.retain(|p, _| !hit(p));
            let gone = (before - entries.len()) as u64;
            if entries.is_empty() {
                map.remove(org);
            }
            self.len.fetch_sub(gone, Ordering::Relaxed);
        } else {
            for (_, e) in entries.iter().filter(|(p, _)| hit(p)) {
                e.expired.store(true, Ordering::Release);
            }
        }
    }

    /// Drops everything, tokens included (a restore replaced the store).
    pub(crate) fn invalidate(&self) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.revoke_tokens();
        map.clear();
        self.len.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}
