//! Master keys kept in the store, wrapped by a KMS (`KEYWARD_KMS`): unwrapped once at start,
//! made on a new store's first start, adopted from the environment and handed back to it.

use keyward_crypto::{KeyId, KeyMaterial, Keyring};
use keyward_kms::Kms;
use keyward_store::{Location, StoredMasterKey, Vault};

use crate::Error;

/// A new master key's id: `k-` and the time, to the second.
pub fn new_kid() -> Result<KeyId, Error> {
    let millis = keyward_core::Millis::now().0;
    let secs = u64::try_from(millis / 1000).unwrap_or(0);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let shown = humantime::format_rfc3339_seconds(at).to_string();
    Ok(KeyId::new(&format!(
        "k-{}",
        shown.trim_end_matches('Z').replace([':', 'T'], "-")
    ))?)
}

/// `key` wrapped by `kms`, as the store keeps it; `primary_since` now.
pub async fn wrap_for_store(kms: &dyn Kms, key: &KeyMaterial) -> Result<StoredMasterKey, Error> {
    let wrapped = kms.wrap(key).await?;
    let now = keyward_core::Millis::now().0;
    Ok(StoredMasterKey {
        kid: key.kid().to_string(),
        kms: kms.kind().to_owned(),
        kms_key: kms.key_name(),
        key_version: wrapped.key_version,
        wrapped: wrapped.blob,
        primary_since: now,
        created_at: now,
        rewrapped_at: None,
        retired_at: None,
    })
}

/// Unwraps every stored key, primary first. A key the KMS will not unwrap fails the whole:
/// dropping it would leave everything it wraps unreadable without a word.
pub async fn unwrap_all(
    kms: &dyn Kms,
    stored: &[StoredMasterKey],
) -> Result<Vec<KeyMaterial>, Error> {
    let mut keys = Vec::with_capacity(stored.len());
    for row in stored {
        if row.kms != kms.kind() {
            return Err(Error::Config(format!(
                "master key '{}' is wrapped by a {} KMS ({}), but KEYWARD_KMS is a {} one: set \
                 KEYWARD_KMS to the KMS that wraps it",
                row.kid,
                row.kms,
                row.kms_key,
                kms.kind()
            )));
        }
        let kid = KeyId::new(&row.kid)?;
        let key = kms
            .unwrap(&kid, &row.wrapped)
            .await
            .map_err(|cause| Error::MasterKeyUnwrap {
                kid: row.kid.clone(),
                cause,
            })?;
        keys.push(key);
    }
    Ok(keys)
}

/// The keyring of the store at `location`, unwrapped by `kms`. A new store gets its first
/// master key here (made by Keyward, wrapped by the KMS, stored wrapped); a store whose
/// records are wrapped by keys the KMS does not hold is refused with the way to adopt them.
pub async fn keyring(kms: &dyn Kms, location: &Location) -> Result<Keyring, Error> {
    let mut stored = keyward_store::read_master_keys(location).await?;
    if stored.keys.is_empty() {
        if !stored.store_is_new {
            return Err(Error::Config(format!(
                "KEYWARD_KMS is set, but this store's master keys are not kept by a KMS (its \
                 records are wrapped by key id(s) {}). To move them into the KMS, run `keyward \
                 master-key adopt-kms` with KEYWARD_KMS and the current KEYWARD_MASTER_KEY(S) or \
                 KEYWARD_MASTER_KEY_FILE both set",
                quoted(&stored.kids_in_use)
            )));
        }
        let first = KeyMaterial::generate(new_kid()?)?;
        let row = wrap_for_store(kms, &first).await?;
        stored.keys = keyward_store::insert_first_master_key(location, &row).await?;
        if stored.keys.first().is_some_and(|k| k.kid == row.kid) {
            tracing::info!(kid = %row.kid, kms = %kms.describe(), "made the store's first master key, wrapped by the KMS");
        }
    }
    let keys = unwrap_all(kms, &stored.keys).await?;
    let keyring = guarded(
        Keyring::new(
            keys.iter().map(KeyMaterial::master_key).collect(),
            "KEYWARD_KMS",
        )?,
        kms,
    );
    let missing: Vec<String> = stored
        .kids_in_use
        .iter()
        .filter(|k| !keyring.contains(k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "records are wrapped by key id(s) {} that the KMS does not keep: adopt them with `keyward master-key adopt-kms`",
            quoted(&missing)
        );
    }
    Ok(keyring)
}

/// `keyring`, also guarding the secrets that sign in to the KMS: the values of the variables
/// `keyward_core::env::withhold_kms_credentials` declared, and what `kms` signs in with (from
/// files and settings too). No stored value may hold one.
pub fn guarded(keyring: Keyring, kms: &dyn Kms) -> Keyring {
    keyring
        .guarding(
            keyward_core::env::kms_credentials()
                .iter()
                .filter_map(|name| std::env::var(name).ok())
                .map(zeroize::Zeroizing::new),
        )
        .guarding(kms.guarded_secrets())
}

fn quoted(kids: &[String]) -> String {
    if kids.is_empty() {
        return "(none)".into();
    }
    kids.iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new primary master key, made by Keyward and wrapped by `kms`, stored and audited; the
/// vault goes on with its keyring as it is (the new key is used from the next start, or at
/// once by `keyward master-key rotate` run after this).
pub async fn new_primary(
    vault: &Vault,
    kms: &dyn Kms,
    kid: Option<&str>,
    actor: &str,
) -> Result<StoredMasterKey, Error> {
    let stored = vault.master_keys().await?;
    // An id is taken while a key has it, retired or not, and while records name it (a key
    // that was lost: a new key under its id would not open them, and would hide the loss).
    let labelled: Vec<String> = vault
        .key_status()
        .await?
        .kids
        .into_iter()
        .filter(|k| k.total() > 0)
        .map(|k| k.kid)
        .collect();
    let taken = |k: &KeyId| {
        vault.keyring().contains(k.as_str())
            || stored.iter().any(|s| s.kid == k.as_str())
            || labelled.iter().any(|l| l == k.as_str())
    };
    let kid = match kid {
        Some(k) => KeyId::new(k)?,
        None => {
            // Ids are made to the second: two within a second get a suffix.
            let base = new_kid()?;
            let mut kid = base.clone();
            let mut n = 2;
            while taken(&kid) {
                kid = KeyId::new(&format!("{base}-{n}"))?;
                n += 1;
            }
            kid
        }
    };
    if taken(&kid) {
        return Err(Error::Config(format!(
            "master key id '{kid}' is in use; choose another"
        )));
    }
    let key = KeyMaterial::generate(kid)?;
    let row = wrap_for_store(kms, &key).await?;
    vault
        .add_master_keys(std::slice::from_ref(&row), "create_kms", actor)
        .await?;
    Ok(row)
}

/// Wraps every stored master key again under the KMS key's newest version (after the KMS key
/// was rotated, or an alias moved to a new key). Answers the keys as stored now.
pub async fn rewrap_all(
    vault: &Vault,
    kms: &dyn Kms,
    actor: &str,
) -> Result<Vec<StoredMasterKey>, Error> {
    for row in vault.master_keys().await? {
        let kid = KeyId::new(&row.kid)?;
        let wrapped = kms.rewrap(&kid, &row.wrapped).await?;
        vault
            .rewrapped_master_key(
                &row.kid,
                &kms.key_name(),
                wrapped.key_version.as_deref(),
                &wrapped.blob,
                actor,
            )
            .await?;
    }
    Ok(vault.master_keys().await?)
}

/// What `adopt` did.
#[derive(Debug)]
pub struct Adopted {
    /// The keys the store keeps now, primary first.
    pub kept: Vec<StoredMasterKey>,
    /// The ids adopted now.
    pub adopted: Vec<String>,
    /// The ids the KMS kept already (the same key).
    pub already: Vec<String>,
}

/// Wraps the keys given in the environment with `kms` and stores them (same ids, same order):
/// everything they wrap stays readable, and from the next start `KEYWARD_KMS` alone opens the
/// vault. A key the store keeps already is skipped if it is the same key, and refused if it is
/// not (then nothing is stored).
pub async fn adopt(
    vault: &Vault,
    kms: &dyn Kms,
    given: &[KeyMaterial],
    actor: &str,
) -> Result<Adopted, Error> {
    let kept = vault.master_keys().await?;
    let now = keyward_core::Millis::now().0;
    let count = i64::try_from(given.len()).unwrap_or(0);
    let mut rows = Vec::new();
    let mut already = Vec::new();
    for (i, key) in given.iter().enumerate() {
        if let Some(stored) = kept.iter().find(|k| k.kid == key.kid().as_str()) {
            let theirs = unwrap_all(kms, std::slice::from_ref(stored)).await?;
            if theirs.first().map(KeyMaterial::expose) != Some(key.expose()) {
                return Err(Error::Config(format!(
                    "the KMS keeps master key '{}' already, and the key given under that id is \
                     another one; nothing was stored. Give the keys this store was made with",
                    key.kid()
                )));
            }
            already.push(key.kid().to_string());
            continue;
        }
        let mut row = wrap_for_store(kms, key).await?;
        // The first given key is primary: its `primary_since` is the newest.
        row.primary_since = now + count - i64::try_from(i).unwrap_or(0);
        // Proof before storing: the KMS gives back the very key.
        let back = kms.unwrap(key.kid(), &row.wrapped).await?;
        if back.expose() != key.expose() {
            return Err(Error::Config(format!(
                "the KMS did not give master key '{}' back as it was wrapped; nothing was stored",
                key.kid()
            )));
        }
        rows.push(row);
    }
    if !rows.is_empty() {
        vault.add_master_keys(&rows, "adopt_kms", actor).await?;
    }
    Ok(Adopted {
        kept: vault.master_keys().await?,
        adopted: rows.into_iter().map(|r| r.kid).collect(),
        already,
    })
}
