//! Backup and restore: the whole store as one versioned file, read in one snapshot while the
//! server keeps running (a read transaction: SQLite's WAL snapshot, PostgreSQL's repeatable
//! read), with every secret still sealed under the master keys exactly as stored, so that a
//! backup without those keys holds nothing usable. Restore writes it into an empty store in
//! one transaction; the audit log, its chain key and its head come along, so `events verify`
//! passes on the restored store.
//!
//! The file is JSON Lines: a header (format, version, the schema's migration, the master key
//! ids the secrets are sealed under, and the row count of every table), then one line per row,
//! its columns typed (`{"i": 1}`, `{"s": "text"}`, `{"b": "base64"}`, `null`), so that the
//! same file restores into SQLite or PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read as _, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use sqlx::{AssertSqlSafe, Column as _, Row as _};

use crate::changes::Change;
use crate::db::Backend;
use crate::{Vault, VaultError};

/// The tables a backup holds, in the order they are restored (what a row refers to first).
/// Console sessions are not kept: after a restore, people sign in again.
const TABLES: [&str; 17] = [
    "organizations",
    "master_keys",
    "vault_keys",
    "credentials",
    "config_vars",
    "api_tokens",
    "gateway_tokens",
    "gateway_usage",
    "usage_hourly",
    "spend_hourly",
    "model_prices",
    "budgets",
    "budget_periods",
    "audit_events",
    "audit_head",
    "audit_base",
    "audit_policy",
];

/// The tables that make a store "not empty" for a restore.
const CONTENT: [&str; 6] = [
    "organizations",
    "credentials",
    "config_vars",
    "api_tokens",
    "gateway_tokens",
    "audit_events",
];

const FORMAT: &str = "keyward-backup";
/// What the seal over a backup's lines is domain-separated by (from the audit chain's links).
const SEAL_TAG: &[u8] = b"keyward-backup-seal-v1";
const VERSION: u32 = 1;

/// A backup's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    /// Always `keyward-backup`.
    pub format: String,
    /// The file format's version.
    pub version: u32,
    /// When it was taken (milliseconds since the epoch).
    pub created_at: i64,
    /// The schema's last migration when it was taken.
    pub migration: i64,
    /// The master key ids its secrets are sealed under.
    pub kids: Vec<String>,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
}

/// The last line: the seal, an HMAC under the store's audit chain key over the SHA-256 of every
/// line before it. Without the master keys it can be neither checked nor forged, so an edit of
/// any row (a strategy, an `active` flag, a plain variable) is found at restore.
#[derive(Serialize, Deserialize)]
struct Seal {
    seal: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    t: String,
    r: BTreeMap<String, Value>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// One column of a row, typed for the file.
fn cell(row: &sqlx::any::AnyRow, i: usize) -> Result<Value, VaultError> {
    use sqlx::ValueRef as _;
    if row.try_get_raw(i)?.is_null() {
        return Ok(Value::Null);
    }
    if let Ok(v) = row.try_get::<i64, _>(i) {
        return Ok(json!({ "i": v }));
    }
    if let Ok(v) = row.try_get::<i32, _>(i) {
        return Ok(json!({ "i": v }));
    }
    if let Ok(v) = row.try_get::<String, _>(i) {
        return Ok(json!({ "s": v }));
    }
    if let Ok(v) = row.try_get::<Vec<u8>, _>(i) {
        return Ok(json!({ "b": b64().encode(v) }));
    }
    Err(VaultError::InvalidInput(format!(
        "column {} has a type backups do not know",
        row.column(i).name()
    )))
}

/// The master keys a backup carries wrapped by a KMS, read before the restore (the KMS unwraps
/// them into the keyring the restore opens the backup with). Empty for a store whose keys were
/// given to it. Only these rows are read; the restore checks the whole file.
pub fn master_keys_in_backup(
    input: impl std::io::BufRead,
) -> Result<Vec<crate::StoredMasterKey>, VaultError> {
    let bad = |why: &str| VaultError::InvalidInput(format!("not a Keyward backup: {why}"));
    let mut keys = Vec::new();
    for line in input.lines() {
        let line = line.map_err(|e| VaultError::Io(format!("cannot read the backup: {e}")))?;
        if !line.contains(r#""master_keys""#) {
            continue;
        }
        let Ok(Line { t, r }) = serde_json::from_str::<Line>(&line) else {
            continue;
        };
        if t != "master_keys" {
            continue;
        }
        let text =
            |name: &str| -> Option<String> { r.get(name)?.get("s")?.as_str().map(str::to_owned) };
        let int = |name: &str| -> Option<i64> { r.get(name)?.get("i")?.as_i64() };
        let wrapped = match r.get("wrapped") {
            Some(Value::Object(o)) => match (o.get("b"), o.get("s")) {
                (Some(b), _) => b64()
                    .decode(b.as_str().ok_or_else(|| bad("bad bytes"))?)
                    .map_err(|_| bad("bad bytes"))?,
                (_, Some(s)) => s
                    .as_str()
                    .ok_or_else(|| bad("bad text"))?
                    .as_bytes()
                    .to_vec(),
                _ => return Err(bad("a master key without its wrapped form")),
            },
            _ => return Err(bad("a master key without its wrapped form")),
        };
        keys.push(crate::StoredMasterKey {
            kid: text("kid").ok_or_else(|| bad("a master key without an id"))?,
            kms: text("kms").ok_or_else(|| bad("a master key without its KMS"))?,
            kms_key: text("kms_key").unwrap_or_default(),
            key_version: text("key_version"),
            wrapped,
            primary_since: int("primary_since").unwrap_or(0),
            created_at: int("created_at").unwrap_or(0),
            rewrapped_at: int("rewrapped_at"),
            retired_at: int("retired_at"),
        });
    }
    keys.sort_by(|a, b| {
        a.retired_at
            .is_some()
            .cmp(&b.retired_at.is_some())
            .then(b.primary_since.cmp(&a.primary_since))
            .then(a.kid.cmp(&b.kid))
    });
    Ok(keys)
}

/// The longest line a backup may hold. Rows are a few KiB (a Vertex service account, sealed,
/// is the largest); a longer line is not a backup, and reading it whole would take memory
/// in proportion to whatever the file holds.
const MAX_LINE: u64 = 16 << 20;

/// The lines of a backup, each read up to [`MAX_LINE`]: memory stays bounded whatever the file.
fn bounded_lines(mut input: impl BufRead) -> impl Iterator<Item = Result<String, VaultError>> {
    let mut number = 0usize;
    std::iter::from_fn(move || {
        number += 1;
        let mut line = Vec::new();
        let read = (&mut input).take(MAX_LINE + 1).read_until(b'\n', &mut line);
        match read {
            Err(e) => Some(Err(bad(format!("cannot read line {number}: {e}")))),
            Ok(0) => None,
            Ok(_) if line.len() as u64 > MAX_LINE => Some(Err(bad(format!(
                "line {number} is longer than {} MiB",
                MAX_LINE >> 20
            )))),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(
                    String::from_utf8(line)
                        .map_err(|_| bad(format!("line {number} is not UTF-8 text"))),
                )
            }
        }
    })
}

fn bad(why: impl Into<String>) -> VaultError {
    VaultError::InvalidInput(format!(
        "not a Keyward backup this version reads: {}",
        why.into()
    ))
}

impl Vault {
    /// Writes a consistent snapshot of the whole store to `out`; the header it wrote.
    pub async fn backup(&self, out: &mut dyn Write) -> Result<BackupHeader, VaultError> {
        let mut tx = self.inner.pool.begin().await?;
        if self.inner.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let migration: i64 = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        let mut tables = BTreeMap::new();
        for t in TABLES {
            let n: i64 = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {t}")))
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            tables.insert(t.to_owned(), u64::try_from(n).unwrap_or(0));
        }
        let mut kids = BTreeSet::new();
        for t in ["credentials", "config_vars", "vault_keys"] {
            for r in sqlx::query(AssertSqlSafe(format!(
                "SELECT DISTINCT kid FROM {t} WHERE kid IS NOT NULL AND kid <> ''"
            )))
            .fetch_all(&mut *tx)
            .await?
            {
                kids.insert(r.try_get::<String, _>("kid")?);
            }
        }
        let header = BackupHeader {
            format: FORMAT.to_owned(),
            version: VERSION,
            created_at: keyward_core::Millis::now().0,
            migration,
            kids: kids.into_iter().collect(),
            tables,
        };
        let Some(chain) = &self.inner.chain else {
            return Err(VaultError::InvalidInput(
                "the configured master keys do not open this vault, so its backup cannot be sealed"
                    .into(),
            ));
        };
        let io =
            |e: std::io::Error| VaultError::InvalidInput(format!("cannot write the backup: {e}"));
        let mut digest = sha2::Sha256::new();
        let mut put = |out: &mut dyn Write, line: Vec<u8>| -> Result<(), VaultError> {
            digest.update(&line);
            digest.update(b"\n");
            out.write_all(&line).map_err(io)?;
            out.write_all(b"\n").map_err(io)
        };
        put(
            out,
            serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?,
        )?;
        for t in TABLES {
            let rows = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {t}")))
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let mut r = BTreeMap::new();
                for (i, c) in row.columns().iter().enumerate() {
                    r.insert(c.name().to_owned(), cell(&row, i)?);
                }
                let line = Line { t: t.to_owned(), r };
                put(
                    out,
                    serde_json::to_vec(&line).map_err(|e| bad(e.to_string()))?,
                )?;
            }
        }
        let seal = chain.link(SEAL_TAG, &digest.finalize());
        serde_json::to_writer(
            &mut *out,
            &Seal {
                seal: b64().encode(seal),
            },
        )
        .map_err(|e| bad(e.to_string()))?;
        out.write_all(b"\n").map_err(io)?;
        out.flush().map_err(io)?;
        tx.rollback().await?;
        Ok(header)
    }

    /// Whether the store holds anything a restore would overwrite.
    pub async fn is_empty_store(&self) -> Result<bool, VaultError> {
        for t in CONTENT {
            let n: i64 = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {t}")))
                .fetch_one(&self.inner.pool)
                .await?
                .try_get("n")?;
            if n > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Restores a backup into this store, in one transaction: refused unless the store is
    /// empty (or `force`, which first deletes what it holds), unless this version reads the
    /// file, and unless the configured master keys hold every key id its secrets are sealed
    /// under. The vault must be opened again afterwards (its audit chain key is the backup's).
    pub async fn restore(
        &self,
        input: impl BufRead,
        force: bool,
    ) -> Result<BackupHeader, VaultError> {
        self.restore_with_progress(input, force, |_, _| {}).await
    }

    /// [`Vault::restore`], telling `progress` (rows written, rows in all) as it goes.
    pub async fn restore_with_progress(
        &self,
        input: impl BufRead,
        force: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<BackupHeader, VaultError> {
        let mut lines = bounded_lines(input);
        let first = lines.next().ok_or_else(|| bad("the file is empty"))??;
        let header: BackupHeader = serde_json::from_str(&first).map_err(|_| bad("no header"))?;
        let mut digest = sha2::Sha256::new();
        digest.update(first.as_bytes());
        digest.update(b"\n");
        let mut seal: Option<Vec<u8>> = None;
        if header.format != FORMAT || header.version != VERSION {
            return Err(bad(format!(
                "format {} version {}",
                header.format, header.version
            )));
        }
        let ours: i64 = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
            .fetch_one(&self.inner.pool)
            .await?
            .try_get("v")?;
        if header.migration > ours {
            return Err(bad(format!(
                "it was taken by a newer Keyward (schema {}, this one has {ours})",
                header.migration
            )));
        }
        let missing: Vec<&String> = header
            .kids
            .iter()
            .filter(|k| {
                !self
                    .inner
                    .keyring
                    .kids()
                    .any(|have| have.as_str() == k.as_str())
            })
            .collect();
        if !missing.is_empty() {
            return Err(VaultError::InvalidInput(format!(
                "the backup's secrets are sealed under master key(s) {}, which the configured keys do not include (set KEYWARD_MASTER_KEYS with them)",
                missing
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !force && !self.is_empty_store().await? {
            return Err(VaultError::InvalidInput(
                "the target store is not empty; restore into an empty one, or pass --force to replace what it holds".into(),
            ));
        }
        let mut tx = self.begin_write().await?;
        for t in TABLES.iter().rev() {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {t}")))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM ui_sessions")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sso_logins")
            .execute(&mut *tx)
            .await?;
        // The verification checkpoint named the replaced log; the restored one is verified
        // whole below, and the next incremental check starts over.
        sqlx::query("DELETE FROM audit_checkpoint")
            .execute(&mut *tx)
            .await?;
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        let total: u64 = header.tables.values().sum();
        let mut done = 0u64;
        for (n, line) in lines.enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if seal.is_some() {
                return Err(bad(format!("line {} follows the seal", n + 2)));
            }
            if let Ok(Seal { seal: s }) = serde_json::from_str::<Seal>(&line) {
                seal = Some(b64().decode(s).map_err(|_| bad("a malformed seal"))?);
                continue;
            }
            digest.update(line.as_bytes());
            digest.update(b"\n");
            let Line { t, r } = serde_json::from_str(&line)
                .map_err(|_| bad(format!("line {} is not a row", n + 2)))?;
            if !TABLES.contains(&t.as_str()) {
                return Err(bad(format!("line {} names table {t:?}", n + 2)));
            }
            if r.keys()
                .any(|c| !c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
            {
                return Err(bad(format!("line {} names a column that is none", n + 2)));
            }
            // A NULL is left to the column (an untyped NULL does not bind on PostgreSQL).
            let r: BTreeMap<String, Value> = r.into_iter().filter(|(_, v)| !v.is_null()).collect();
            let cols: Vec<&String> = r.keys().collect();
            let sql = format!(
                "INSERT INTO {t} ({}) VALUES ({})",
                cols.iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                (1..=cols.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for v in r.values() {
                q = match v {
                    Value::Object(o) => match (o.get("i"), o.get("s"), o.get("b")) {
                        (Some(i), _, _) => q.bind(i.as_i64().ok_or_else(|| bad("a bad integer"))?),
                        (_, Some(s), _) => {
                            q.bind(s.as_str().ok_or_else(|| bad("a bad text"))?.to_owned())
                        }
                        (_, _, Some(b)) => q.bind(
                            b64()
                                .decode(b.as_str().ok_or_else(|| bad("bad bytes"))?)
                                .map_err(|_| bad("bad bytes"))?,
                        ),
                        _ => return Err(bad(format!("line {} has an untyped value", n + 2))),
                    },
                    _ => return Err(bad(format!("line {} has an untyped value", n + 2))),
                };
            }
            q.execute(&mut *tx).await?;
            *counted.entry(t).or_default() += 1;
            done += 1;
            if done.is_multiple_of(1000) || done == total {
                progress(done, total);
            }
        }
        for (t, want) in &header.tables {
            let got = counted.get(t).copied().unwrap_or(0);
            if got != *want {
                return Err(bad(format!(
                    "table {t} has {got} rows where the header says {want}: the file is cut short or edited"
                )));
            }
        }
        let Some(seal) = seal else {
            return Err(bad("it has no seal: the file is cut short"));
        };
        // The configured keys must open the backup's audit chain key (a key id alone does not
        // say it is the same key: every single KEYWARD_MASTER_KEY is `default`), and that key
        // must check the seal.
        let mut sealed_ok = false;
        for row in sqlx::query("SELECT name, wrapped FROM vault_keys")
            .fetch_all(&mut *tx)
            .await?
        {
            let name: String = row.try_get("name")?;
            if name != crate::audit::CHAIN_KEY_NAME {
                continue;
            }
            let wrapped: Vec<u8> = row.try_get("wrapped")?;
            let Ok(dek) = self
                .inner
                .keyring
                .unwrap(&wrapped, crate::audit::CHAIN_KEY_RECORD)
            else {
                return Err(VaultError::InvalidInput(
                    "the configured master keys do not open this backup (same key id, other key?): set KEYWARD_MASTER_KEYS to the keys the backup was taken under; nothing was changed".into(),
                ));
            };
            let chain = keyward_crypto::ChainKey::from_data_key(&dek);
            sealed_ok = chain.verify(SEAL_TAG, &digest.clone().finalize(), &seal);
        }
        if !sealed_ok {
            return Err(bad(
                "its seal does not match its content: the file was edited",
            ));
        }
        // Every credential must open before anything is committed.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM credentials",
            crate::creds::COLUMNS
        )))
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let cred = crate::creds::CredRow::from_row(row)?;
            if cred.open_secret(&self.inner.keyring).is_err() {
                return Err(bad(format!(
                    "credential {} does not open with the configured keys",
                    cred.id
                )));
            }
        }
        self.commit(tx, "restore of", "the backup").await?;
        self.changed(Change::DropAll).await;
        Ok(header)
    }
}
