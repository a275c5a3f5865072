//! Master keys: how many records each key id wraps, what start-up must warn about, and the
//! resumable rotation that rewraps data keys under the primary key.
//!
//! Rotation only rewraps data keys; sealed values are never re-encrypted. Each row records the
//! kid that wraps it and every configured key can unwrap, so a rotation stopped at any point
//! (even by `kill -9`) leaves every row readable, and running it again carries on.

use std::collections::{BTreeMap, HashSet};

use keyward_core::audit::{Category, NewEvent, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use crate::audit::CHAIN_KEY_RECORD;
use crate::changes::Change;
use crate::{Vault, VaultError};

/// Rows wrapped by one key id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KidCount {
    /// The key id.
    pub kid: String,
    /// Whether it is configured.
    pub configured: bool,
    /// Whether it is the primary key.
    pub primary: bool,
    /// Credentials whose data key it wraps.
    pub credentials: u64,
    /// Sensitive variables whose data key it wraps.
    pub variables: u64,
    /// Keys of the vault itself (the audit chain key).
    pub vault_keys: u64,
    /// Where this process took the key from: `KMS transit:transit/keys/keyward-kek (version
    /// 2)` for a key a KMS keeps, else the variable or file that gave it
    /// (`KEYWARD_MASTER_KEY_FILE`, `development key file PATH`); none when it is not configured
    /// (then, if a KMS keeps it, that KMS).
    #[serde(default)]
    pub lives_in: Option<String>,
}

impl KidCount {
    /// All rows it wraps.
    pub fn total(&self) -> u64 {
        self.credentials + self.variables + self.vault_keys
    }
}

/// What `master-key status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyStatus {
    /// The primary key id.
    pub primary: String,
    /// Every key id that is configured or wraps rows, primary first.
    pub kids: Vec<KidCount>,
    /// Whether the audit chain key opens with the configured keys.
    pub audit_chain_ok: bool,
    /// Rows an external migration wrote in plain text, not yet sealed (`keyward reencrypt`).
    #[serde(default)]
    pub legacy_plaintext: u64,
}

impl KeyStatus {
    /// Rows still wrapped by a configured key other than the primary.
    pub fn pending_rotation(&self) -> u64 {
        self.kids
            .iter()
            .filter(|k| k.configured && !k.primary)
            .map(KidCount::total)
            .sum()
    }

    /// What start-up reports: key ids that wrap rows but are not configured, a key that does
    /// not open the vault, and a pending rotation.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in self.kids.iter().filter(|k| !k.configured && k.total() > 0) {
            let remedy = match &k.lives_in {
                // The store keeps it wrapped by a KMS: the process was started without it.
                Some(kms) => {
                    format!("Keyward starts with KEYWARD_KMS set to the KMS that keeps it ({kms})")
                }
                None => "it is added back to KEYWARD_MASTER_KEYS".to_owned(),
            };
            out.push(format!(
                "master key '{}' is not configured but wraps {} credential(s), {} variable(s) and {} vault key(s): \
                 they cannot be decrypted until {remedy}",
                k.kid, k.credentials, k.variables, k.vault_keys
            ));
        }
        if !self.audit_chain_ok && self.kids.iter().any(|k| k.configured && k.vault_keys > 0) {
            out.push(
                "the configured master key does not open this vault's data (wrong key for its id?): \
                 records are undecryptable and audited operations are refused"
                    .to_owned(),
            );
        }
        if self.legacy_plaintext > 0 {
            out.push(format!(
                "{} record(s) are stored in plain text (written by an external migration); run `keyward reencrypt` to seal them",
                self.legacy_plaintext
            ));
        }
        let pending = self.pending_rotation();
        if pending > 0 {
            out.push(format!(
                "{pending} record(s) are still wrapped by a non-primary master key; run `keyward master-key rotate`"
            ));
        }
        out
    }
}

/// Progress of a rotation, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct RotationProgress {
    /// Rows rewrapped so far.
    pub done: u64,
    /// Rows to rewrap in all.
    pub total: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotationReport {
    /// The primary key everything was rewrapped under.
    pub primary: String,
    /// Rows rewrapped.
    pub rewrapped: u64,
    /// Rows whose data key could not be unwrapped (tampered or wrong key); left as they are.
    pub failed: u64,
    /// Rows that changed while being rotated and were tried again.
    pub retried: u64,
    /// Rows still wrapped by a non-primary key afterwards (unopenable, or changing all along);
    /// zero when the rotation is complete.
    pub remaining: u64,
}

/// The tables holding wrapped data keys: table, id column, how a row's wrap is bound.
struct Wrapped {
    table: &'static str,
    key_col: &'static str,
    wrapped_col: &'static str,
    has_version: bool,
}

const TABLES: [Wrapped; 3] = [
    Wrapped {
        table: "credentials",
        key_col: "id",
        wrapped_col: "wrapped_dek",
        has_version: true,
    },
    Wrapped {
        table: "config_vars",
        key_col: "id",
        wrapped_col: "wrapped_dek",
        has_version: true,
    },
    Wrapped {
        table: "vault_keys",
        key_col: "name",
        wrapped_col: "wrapped",
        has_version: false,
    },
];

impl Wrapped {
    /// The record id the wrap's associated data names.
    fn record_id(&self, key: &str) -> String {
        if self.table == "vault_keys" {
            debug_assert_eq!(key, "audit_chain");
            CHAIN_KEY_RECORD.to_owned()
        } else {
            key.to_owned()
        }
    }
}

impl Vault {
    /// Counts rows per key id.
    pub async fn key_status(&self) -> Result<KeyStatus, VaultError> {
        let keyring = &self.inner.keyring;
        let primary = keyring.primary_kid().to_string();
        let mut by_kid: BTreeMap<String, KidCount> = BTreeMap::new();
        for kid in keyring.kids() {
            by_kid.insert(kid.to_string(), self.kid_count(kid.as_str()));
        }
        for (i, t) in TABLES.iter().enumerate() {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT kid, COUNT(*) AS n FROM {} WHERE kid IS NOT NULL AND kid <> '' GROUP BY kid",
                t.table
            )))
            .fetch_all(&self.inner.pool)
            .await?;
            for row in rows {
                let kid: String = row.try_get("kid")?;
                let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
                let entry = by_kid
                    .entry(kid.clone())
                    .or_insert_with(|| self.kid_count(&kid));
                match i {
                    0 => entry.credentials = n,
                    1 => entry.variables = n,
                    _ => entry.vault_keys = n,
                }
            }
        }
        let from_kms = keyring.source() == "KEYWARD_KMS";
        let stored = self.master_keys().await?;
        for wrapped in &stored {
            if let Some(entry) = by_kid.get_mut(&wrapped.kid) {
                let kms = match &wrapped.key_version {
                    Some(v) => format!("KMS {}:{} (version {v})", wrapped.kms, wrapped.kms_key),
                    None => format!("KMS {}:{}", wrapped.kms, wrapped.kms_key),
                };
                // Where this process took it from first; a KMS may keep a copy besides.
                entry.lives_in = Some(match &entry.lives_in {
                    Some(source) if !from_kms => format!("{source} (a {kms} keeps it too)"),
                    _ => kms,
                });
            }
        }
        // A retired key is kept for what stale servers may still wrap under it; listed only
        // while it wraps something.
        by_kid.retain(|kid, count| {
            count.total() > 0
                || !stored
                    .iter()
                    .any(|s| &s.kid == kid && s.retired_at.is_some())
        });
        let mut kids: Vec<KidCount> = by_kid.into_values().collect();
        kids.sort_by_key(|k| (!k.primary, !k.configured, k.kid.clone()));
        Ok(KeyStatus {
            primary,
            kids,
            audit_chain_ok: self.inner.chain.is_some(),
            legacy_plaintext: self.legacy_plaintext_count().await?,
        })
    }

    /// What start-up should report (see [`KeyStatus::warnings`]). Cheap when all is well: it
    /// only lists the distinct key ids in use, and counts rows only when one is not primary.
    pub async fn startup_warnings(&self) -> Result<Vec<String>, VaultError> {
        let primary = self.inner.keyring.primary_kid().as_str();
        let mut all_primary = self.inner.chain.is_some();
        for t in &TABLES {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT DISTINCT kid FROM {} WHERE kid IS NOT NULL AND kid <> ''",
                t.table
            )))
            .fetch_all(&self.inner.pool)
            .await?;
            for row in rows {
                all_primary &= row.try_get::<String, _>("kid")? == primary;
            }
        }
        if all_primary && self.legacy_plaintext_count().await? == 0 {
            return Ok(Vec::new());
        }
        Ok(self.key_status().await?.warnings())
    }

    /// Rewraps the rows of one table under `kid`. A row changed by a concurrent update between
    /// the read and the write is retried in another pass (up to a bound); a row whose data key
    /// does not unwrap is left as it is and counted once.
    async fn rotate_rows(
        &self,
        t: &Wrapped,
        kid: &str,
        batch: i64,
        report: &mut RotationReport,
        progress: &mut impl FnMut(RotationProgress),
        total: u64,
    ) -> Result<(), VaultError> {
        const MAX_PASSES: usize = 10;
        let keyring = &self.inner.keyring;
        let primary = keyring.primary_kid().to_string();
        let version_col = if t.has_version {
            "version"
        } else {
            "0 AS version"
        };
        let select = format!(
            "SELECT {key} AS k, {wrapped} AS w, {version_col} FROM {table} \
             WHERE kid = $1 AND {key} > $2 ORDER BY {key} LIMIT $3",
            key = t.key_col,
            wrapped = t.wrapped_col,
            table = t.table,
        );
        let update = format!(
            "UPDATE {table} SET kid = $1, {wrapped} = $2 WHERE {key} = $3 AND kid = $4{cas}",
            table = t.table,
            wrapped = t.wrapped_col,
            key = t.key_col,
            cas = if t.has_version {
                " AND version = $5"
            } else {
                ""
            },
        );
        let mut unopenable: HashSet<String> = HashSet::new();
        for _pass in 0..MAX_PASSES {
            let mut raced = 0u64;
            let mut cursor = String::new();
            loop {
                let rows = sqlx::query(AssertSqlSafe(select.as_str()))
                    .bind(kid)
                    .bind(&cursor)
                    .bind(batch)
                    .fetch_all(&self.inner.pool)
                    .await?;
                let Some(last) = rows.last() else { break };
                cursor = last.try_get("k")?;
                let mut tx = self.begin_write().await?;
                for row in &rows {
                    let key: String = row.try_get("k")?;
                    if unopenable.contains(&key) {
                        continue;
                    }
                    let wrapped: Vec<u8> = row.try_get("w")?;
                    let version: i64 = row.try_get("version")?;
                    let record_id = t.record_id(&key);
                    let rewrapped = match keyring.unwrap(&wrapped, &record_id) {
                        Ok(dek) => keyring.wrap(&dek, &record_id)?,
                        Err(e) => {
                            tracing::warn!(table = t.table, record = %key, error = %e, "cannot rewrap a data key");
                            unopenable.insert(key);
                            report.failed += 1;
                            continue;
                        }
                    };
                    let mut q = sqlx::query(AssertSqlSafe(update.as_str()))
                        .bind(&primary)
                        .bind(rewrapped)
                        .bind(&key)
                        .bind(kid);
                    if t.has_version {
                        q = q.bind(version);
                    }
                    if q.execute(&mut *tx).await?.rows_affected() == 1 {
                        report.rewrapped += 1;
                    } else {
                        raced += 1;
                    }
                }
                self.commit(tx, "rewrapped batch of", t.table).await?;
                progress(RotationProgress {
                    done: report.rewrapped + report.failed,
                    total,
                });
            }
            if raced == 0 {
                break;
            }
            report.retried += raced;
        }
        Ok(())
    }

    fn kid_count(&self, kid: &str) -> KidCount {
        KidCount {
            kid: kid.to_owned(),
            configured: self.inner.keyring.contains(kid),
            primary: self.inner.keyring.primary_kid().as_str() == kid,
            credentials: 0,
            variables: 0,
            vault_keys: 0,
            lives_in: self
                .inner
                .keyring
                .contains(kid)
                .then(|| self.inner.keyring.source().to_owned()),
        }
    }

    /// Rewraps every data key wrapped by a configured non-primary key under the primary key, in
    /// batches of `batch_size` rows, each batch one transaction. Safe to stop at any point and
    /// to run again; safe beside concurrent writes (a row changed meanwhile is left to that
    /// change, which already wrapped under the primary key).
    pub async fn rotate_master_key(
        &self,
        batch_size: usize,
        actor: &str,
        mut progress: impl FnMut(RotationProgress),
    ) -> Result<RotationReport, VaultError> {
        let keyring = &self.inner.keyring;
        let primary = keyring.primary_kid().to_string();
        let old_kids: Vec<String> = keyring
            .kids()
            .filter(|k| k.as_str() != primary)
            .map(ToString::to_string)
            .collect();
        let status = self.key_status().await?;
        let total = status.pending_rotation();
        if total > 0 && !keyring.primary_kept() {
            return Err(VaultError::InvalidInput(format!(
                "refusing to rewrap {total} record(s) under master key '{primary}': it was given \
                 only in an environment variable (KEYWARD_MASTER_KEY or KEYWARD_MASTER_KEYS), so \
                 nothing shows that it is kept anywhere else, and a key that exists only in this \
                 process would leave the vault unreadable. Let `keyward master-key rotate \
                 --new-key-file PATH` write a new key to a file first, or put the key in a file \
                 (mode 0600) named by KEYWARD_MASTER_KEY_FILE; if it is saved elsewhere (a secret \
                 manager), say so with --danger-primary-key-saved-elsewhere"
            )));
        }
        let mut report = RotationReport {
            primary: primary.clone(),
            ..RotationReport::default()
        };
        self.record(
            NewEvent::new(
                actor,
                Category::KeyManagement,
                "rotate_start",
                "master_key".into(),
            )
            .details(json!({ "primary": primary, "pending": total, "from": old_kids })),
        )
        .await?;
        progress(RotationProgress { done: 0, total });
        let batch = i64::try_from(batch_size.max(1)).unwrap_or(1000);
        for t in &TABLES {
            for kid in &old_kids {
                self.rotate_rows(t, kid, batch, &mut report, &mut progress, total)
                    .await?;
            }
        }
        report.remaining = self.key_status().await?.pending_rotation();
        // Rewrapped, not changed: what is cached still opens; read it again anyway.
        self.changed(Change::ExpireAll).await;
        self.record(
            NewEvent::new(
                actor,
                Category::KeyManagement,
                "rotate",
                "master_key".into(),
            )
            .outcome(if report.failed == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            })
            .details(json!({
                "primary": primary,
                "rewrapped": report.rewrapped,
                "failed": report.failed,
                "retried": report.retried,
                "remaining": report.remaining,
            })),
        )
        .await?;
        Ok(report)
    }
}

/// What `keyward reencrypt` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReencryptReport {
    /// Credentials sealed.
    pub credentials: u64,
    /// Sensitive variables sealed.
    pub variables: u64,
    /// Rows that could not be sealed (each logged); left as they are.
    pub failed: u64,
}

impl Vault {
    /// Legacy plain-text rows: credentials without a data key, sensitive variables without one.
    pub async fn legacy_plaintext_count(&self) -> Result<u64, VaultError> {
        let creds: i64 = sqlx::query("SELECT COUNT(*) AS n FROM credentials WHERE kid = ''")
            .fetch_one(&self.inner.pool)
            .await?
            .try_get("n")?;
        let vars: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM config_vars WHERE sensitive = 1 AND wrapped_dek IS NULL",
        )
        .fetch_one(&self.inner.pool)
        .await?
        .try_get("n")?;
        Ok(u64::try_from(creds + vars).unwrap_or(0))
    }

    /// Seals every legacy plain-text row, `batch` at a time, each row its own audited update
    /// (`reencrypt` for a credential, `set` for a variable): safe to stop and run again, it
    /// goes on with what is left.
    pub async fn reencrypt_legacy(
        &self,
        batch: i64,
        actor: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<ReencryptReport, VaultError> {
        let mut report = ReencryptReport::default();
        let mut skip: std::collections::HashSet<String> = Default::default();
        loop {
            let ids: Vec<String> =
                sqlx::query("SELECT id FROM credentials WHERE kid = '' ORDER BY id LIMIT $1")
                    .bind(batch.max(1) + i64::try_from(skip.len()).unwrap_or(0))
                    .fetch_all(&self.inner.pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()?;
            let todo: Vec<String> = ids.into_iter().filter(|i| !skip.contains(i)).collect();
            if todo.is_empty() {
                break;
            }
            for id in todo {
                let cid = keyward_core::CredentialId::from_stored(&id)?;
                let current = self.get_credential(&cid).await?;
                let update = keyward_core::credential::CredentialUpdate {
                    active: Some(current.active),
                    ..Default::default()
                };
                match self
                    .update_credential(&cid, Some(current.version), update, actor)
                    .await
                {
                    Ok(_) => report.credentials += 1,
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(credential = %id, error = %e, "cannot seal a legacy credential");
                        report.failed += 1;
                        skip.insert(id);
                    }
                }
                progress(report.credentials + report.variables);
            }
        }
        let rows = sqlx::query(
            "SELECT name, scope FROM config_vars WHERE sensitive = 1 AND wrapped_dek IS NULL",
        )
        .fetch_all(&self.inner.pool)
        .await?;
        for r in rows {
            let name = keyward_core::VarName::from_stored(&r.try_get::<String, _>("name")?)?;
            let scope: String = r.try_get("scope")?;
            let org = (!scope.is_empty())
                .then(|| keyward_core::OrgId::from_stored(&scope))
                .transpose()?;
            let got = self.get_var(&name, org.as_ref(), true, actor).await?;
            let Some(value) = got.value else { continue };
            self.set_var(
                &name,
                org.as_ref(),
                &value,
                true,
                Some(&got.view.description),
                actor,
            )
            .await?;
            report.variables += 1;
            progress(report.credentials + report.variables);
        }
        // SQLite keeps the old pages in its write-ahead log until a checkpoint (its main file
        // is overwritten in place, `secure_delete`): fold the log back now, so that the plain
        // text is gone from the disk as well.
        if self.inner.backend == crate::db::Backend::Sqlite
            && report.credentials + report.variables > 0
        {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.inner.pool)
                .await?;
        }
        Ok(report)
    }
}
