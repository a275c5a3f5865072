//! Master keys wrapped by a KMS (`KEYWARD_KMS`): the `master_keys` table holds the KMS's
//! ciphertext of each key, with the KMS key and its version; never a key. Keyward unwraps them
//! once at start (in `keyward`'s configuration), before the vault opens: so the reads here come
//! in two kinds, [`read_master_keys`] and [`insert_first_master_key`] on a store that is not
//! open yet, and audited writes on an open [`Vault`].

use keyward_core::Millis;
use keyward_core::audit::{Category, NewEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AnyPool, Row as _};

use crate::{Location, Vault, VaultError, db, map_unique};

/// One master key as the KMS wrapped it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredMasterKey {
    /// The master key's id.
    pub kid: String,
    /// The kind of KMS: `transit`, `aws-kms`, `pkcs11`.
    pub kms: String,
    /// The KMS key that wraps it (a Transit key, an AWS KMS key ARN, a PKCS#11 key label).
    pub kms_key: String,
    /// The KMS key's version that wrapped it, where the KMS says.
    pub key_version: Option<String>,
    /// The KMS's ciphertext. Not secret without the KMS, but never shown.
    #[serde(skip)]
    pub wrapped: Vec<u8>,
    /// When it became primary (the newest is).
    pub primary_since: i64,
    /// When it was made or adopted.
    pub created_at: i64,
    /// When it was last wrapped again (`keyward master-key rewrap-kms`).
    pub rewrapped_at: Option<i64>,
    /// When it was retired (`keyward master-key retire`): kept and unwrapped, not listed.
    #[serde(default)]
    pub retired_at: Option<i64>,
}

/// What a store holds before it opens: its wrapped master keys (primary first) and whether it
/// holds anything yet.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    /// The wrapped master keys, primary first.
    pub keys: Vec<StoredMasterKey>,
    /// The store has never been opened (no audit chain key): a first master key may be made.
    pub store_is_new: bool,
    /// The key ids that wrap something in the store now.
    pub kids_in_use: Vec<String>,
}

const COLUMNS: &str = "kid, kms, kms_key, key_version, wrapped, primary_since, created_at, \
                       rewrapped_at, retired_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredMasterKey, VaultError> {
    Ok(StoredMasterKey {
        kid: row.try_get("kid")?,
        kms: row.try_get("kms")?,
        kms_key: row.try_get("kms_key")?,
        key_version: row.try_get("key_version")?,
        wrapped: row.try_get("wrapped")?,
        primary_since: row.try_get("primary_since")?,
        created_at: row.try_get("created_at")?,
        rewrapped_at: row.try_get("rewrapped_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

async fn all(pool: &AnyPool) -> Result<Vec<StoredMasterKey>, VaultError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM master_keys \
         ORDER BY CASE WHEN retired_at IS NULL THEN 0 ELSE 1 END, primary_since DESC, kid"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

async fn short_connection(location: &Location) -> Result<AnyPool, VaultError> {
    Ok(db::connect(location, Some(1), None).await?.0)
}

/// Reads the wrapped master keys of the store at `location` (running its migrations), before
/// the vault opens with the keys they unwrap to.
pub async fn read_master_keys(location: &Location) -> Result<StoredKeys, VaultError> {
    let pool = short_connection(location).await?;
    let keys = all(&pool).await;
    let chain: Result<i64, VaultError> = async {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM vault_keys")
            .fetch_one(&pool)
            .await?
            .try_get("n")?)
    }
    .await;
    let mut kids_in_use = Vec::new();
    for table in ["vault_keys", "credentials", "config_vars"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT kid FROM {table} WHERE kid IS NOT NULL AND kid <> ''"
        )))
        .fetch_all(&pool)
        .await;
        for row in rows? {
            let kid: String = row.try_get("kid")?;
            if !kids_in_use.contains(&kid) {
                kids_in_use.push(kid);
            }
        }
    }
    pool.close().await;
    Ok(StoredKeys {
        keys: keys?,
        store_is_new: chain? == 0,
        kids_in_use,
    })
}

/// Stores the first master key of a new store, unless another process stored one first; answers
/// the keys stored (the winner's). The audit log begins when the vault first opens, which
/// records it.
pub async fn insert_first_master_key(
    location: &Location,
    key: &StoredMasterKey,
) -> Result<Vec<StoredMasterKey>, VaultError> {
    let pool = short_connection(location).await?;
    let inserted = sqlx::query(
        "INSERT INTO master_keys (kid, kms, kms_key, key_version, wrapped, primary_since, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM master_keys) \
         AND NOT EXISTS (SELECT 1 FROM vault_keys)",
    )
    .bind(&key.kid)
    .bind(&key.kms)
    .bind(&key.kms_key)
    .bind(key.key_version.as_deref())
    .bind(&key.wrapped)
    .bind(key.primary_since)
    .bind(key.created_at)
    .execute(&pool)
    .await;
    let keys = match inserted {
        Ok(_) => all(&pool).await,
        // Another process inserted the same id a moment earlier: its key stands.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => all(&pool).await,
        Err(e) => Err(e.into()),
    };
    pool.close().await;
    keys
}

impl Vault {
    /// On a new store's first open: one `create_kms` event per master key a KMS keeps.
    pub(crate) async fn record_kms_keys_of_new_store(&self) -> Result<(), VaultError> {
        let events: Vec<NewEvent> = self
            .master_keys()
            .await?
            .into_iter()
            .map(|key| {
                NewEvent::new(
                    "keyward",
                    Category::KeyManagement,
                    "create_kms",
                    format!("master_key:{}", key.kid),
                )
                .details(json!({
                    "kms": key.kms,
                    "kms_key": key.kms_key,
                    "key_version": key.key_version,
                    "first": true,
                }))
            })
            .collect();
        if events.is_empty() || self.inner.chain.is_none() {
            return Ok(());
        }
        self.record_many(events).await
    }

    /// The wrapped master keys, primary first.
    pub async fn master_keys(&self) -> Result<Vec<StoredMasterKey>, VaultError> {
        all(&self.inner.pool).await
    }

    /// Stores master keys a KMS wrapped: a new primary (`keyward master-key new`), or the keys
    /// configured in the environment, adopted (`keyward master-key adopt-kms`). `action` names
    /// the event: `create_kms` or `adopt_kms`. All or none.
    pub async fn add_master_keys(
        &self,
        keys: &[StoredMasterKey],
        action: &str,
        actor: &str,
    ) -> Result<(), VaultError> {
        let mut tx = self.begin_write().await?;
        for key in keys {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO master_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
            )))
            .bind(&key.kid)
            .bind(&key.kms)
            .bind(&key.kms_key)
            .bind(key.key_version.as_deref())
            .bind(&key.wrapped)
            .bind(key.primary_since)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_unique(e, || format!("master key '{}' in the KMS table", key.kid)))?;
            self.append_event(
                &mut tx,
                NewEvent::new(
                    actor,
                    Category::KeyManagement,
                    action,
                    format!("master_key:{}", key.kid),
                )
                .details(json!({
                    "kms": key.kms,
                    "kms_key": key.kms_key,
                    "key_version": key.key_version,
                })),
            )
            .await?;
        }
        self.commit(tx, "master keys", action).await
    }

    /// Replaces a master key's wrapped form after a KMS key rotation (`keyward master-key
    /// rewrap-kms`). The key itself does not change, so nothing else does.
    pub async fn rewrapped_master_key(
        &self,
        kid: &str,
        kms_key: &str,
        key_version: Option<&str>,
        wrapped: &[u8],
        actor: &str,
    ) -> Result<(), VaultError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE master_keys SET kms_key = $1, key_version = $2, wrapped = $3, rewrapped_at = $4 \
             WHERE kid = $5",
        )
        .bind(kms_key)
        .bind(key_version)
        .bind(wrapped)
        .bind(Millis::now().0)
        .bind(kid)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(VaultError::NotFound(format!("master key '{kid}'")));
        }
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::KeyManagement,
                "rewrap_kms",
                format!("master_key:{kid}"),
            )
            .details(json!({ "kms_key": kms_key, "key_version": key_version })),
        )
        .await?;
        self.commit(tx, "master key", kid).await
    }

    /// Retires a master key the KMS keeps (`keyward master-key retire`): it is no longer listed,
    /// but kept, and still unwrapped at start, so that what a server started before the change
    /// wraps under it (a server keeps the keyring it started with) stays readable; a rotation
    /// then moves it. Refused for the primary and for a key that wraps anything now.
    pub async fn retire_master_key(&self, kid: &str, actor: &str) -> Result<(), VaultError> {
        let keys = self.master_keys().await?;
        match keys.iter().position(|k| k.kid == kid) {
            None => return Err(VaultError::NotFound(format!("master key '{kid}'"))),
            Some(i) if keys[i].retired_at.is_some() => {
                return Err(VaultError::InvalidInput(format!(
                    "master key '{kid}' is retired already"
                )));
            }
            Some(0) => {
                return Err(VaultError::InvalidInput(format!(
                    "master key '{kid}' is the primary key; make another primary first \
                     (`keyward master-key new`, then `keyward master-key rotate`)"
                )));
            }
            Some(_) => {}
        }
        let mut tx = self.begin_write().await?;
        let mut wraps = 0i64;
        for table in ["credentials", "config_vars", "vault_keys"] {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE kid = $1"
            )))
            .bind(kid)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            wraps += n;
        }
        if wraps > 0 {
            return Err(VaultError::InvalidInput(format!(
                "master key '{kid}' still wraps {wraps} record(s): run `keyward master-key \
                 rotate` first, or they could not be opened again"
            )));
        }
        sqlx::query("UPDATE master_keys SET retired_at = $1 WHERE kid = $2")
            .bind(Millis::now().0)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::KeyManagement,
                "retire_kms",
                format!("master_key:{kid}"),
            ),
        )
        .await?;
        self.commit(tx, "master key", kid).await
    }

    /// Forgets the KMS-wrapped master keys (`keyward master-key leave-kms`, once they are
    /// written elsewhere): from now on the keys come from the environment. Answers how many.
    pub async fn leave_kms(&self, kids: &[String], actor: &str) -> Result<u64, VaultError> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM master_keys")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.append_event(
            &mut tx,
            NewEvent::new(
                actor,
                Category::KeyManagement,
                "leave_kms",
                "master_key".into(),
            )
            .details(json!({ "kids": kids })),
        )
        .await?;
        self.commit(tx, "master keys", "leave-kms").await?;
        Ok(removed)
    }
}
