//! The audit log: append-only events, each chained to the one before with an HMAC.

use keyward_core::Millis;
use keyward_core::audit::{AuditEvent, EventFilter, NewEvent, Outcome};
use keyward_crypto::{ChainKey, DataKey, Keyring};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::commit::WriteTx;
use crate::{Vault, VaultError};

pub(crate) const CHAIN_KEY_NAME: &str = "audit_chain";
/// The record id the chain key's wrap is bound to.
pub(crate) const CHAIN_KEY_RECORD: &str = "vault_key:audit_chain";
const GENESIS: [u8; 32] = [0; 32];

/// Loads the chain key, creating it on first use. Returns `None` (and the vault refuses audited
/// writes) when the stored key cannot be unwrapped with the configured master keys.
pub(crate) async fn load_or_create_chain_key(
    pool: &AnyPool,
    keyring: &Keyring,
) -> Result<Option<ChainKey>, VaultError> {
    sqlx::query(
        "INSERT INTO audit_head (id, seq, link) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING",
    )
    .bind(GENESIS.to_vec())
    .execute(pool)
    .await?;
    let existing = sqlx::query("SELECT wrapped FROM vault_keys WHERE name = $1")
        .bind(CHAIN_KEY_NAME)
        .fetch_optional(pool)
        .await?;
    let wrapped: Vec<u8> = match existing {
        Some(row) => row.try_get("wrapped")?,
        None => {
            let dek = DataKey::generate()?;
            let wrapped = keyring.wrap(&dek, CHAIN_KEY_RECORD)?;
            // Two processes may race to create it: the first insert wins, and both read it back.
            sqlx::query(
                "INSERT INTO vault_keys (name, kid, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(CHAIN_KEY_NAME)
            .bind(keyring.primary_kid().as_str())
            .bind(wrapped)
            .bind(Millis::now().0)
            .execute(pool)
            .await?;
            sqlx::query("SELECT wrapped FROM vault_keys WHERE name = $1")
                .bind(CHAIN_KEY_NAME)
                .fetch_one(pool)
                .await?
                .try_get("wrapped")?
        }
    };
    let Ok(dek) = keyring.unwrap(&wrapped, CHAIN_KEY_RECORD) else {
        return Ok(None);
    };
    let chain = ChainKey::from_data_key(&dek);
    // A head without its MAC is a new log (or one from before the MAC existed): seal it now.
    let head = sqlx::query("SELECT seq, link FROM audit_head WHERE id = 1 AND mac IS NULL")
        .fetch_optional(pool)
        .await?;
    if let Some(head) = head {
        let seq: i64 = head.try_get("seq")?;
        let link: Vec<u8> = head.try_get("link")?;
        sqlx::query("UPDATE audit_head SET mac = $1 WHERE id = 1 AND mac IS NULL AND seq = $2")
            .bind(head_mac(&chain, seq, &link).to_vec())
            .bind(seq)
            .execute(pool)
            .await?;
    }
    Ok(Some(chain))
}

/// The MAC of the chain's head. "audit-head" stands where a previous link would, and its length
/// differs from a link's, so a head MAC never equals an event link.
pub(crate) fn head_mac(chain: &ChainKey, seq: i64, link: &[u8]) -> [u8; 32] {
    chain.link(b"audit-head", &[&seq.to_be_bytes()[..], link].concat())
}

/// What `events verify` found.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// Events checked.
    pub checked: u64,
    /// The sequence number recorded as the head of the chain.
    pub head_seq: i64,
    /// The first problem, if any: sequence number and what is wrong.
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub problem: Option<(i64, String)>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl Vault {
    pub(crate) fn chain(&self) -> Result<&ChainKey, VaultError> {
        self.inner.chain.as_ref().ok_or_else(|| {
            VaultError::AuditUnavailable(
                "the audit chain key cannot be opened with the configured master keys".into(),
            )
        })
    }

    /// Stages `event` with the write `tx`: it is appended to the chain when the write's batch
    /// commits, in the same transaction, so a write whose event cannot be stored does not
    /// happen. Refused at once when the chain key is not open.
    pub(crate) async fn append_event(
        &self,
        tx: &mut WriteTx,
        event: NewEvent,
    ) -> Result<(), VaultError> {
        self.chain()?;
        tx.stage(event);
        Ok(())
    }

    /// Writes one event with the next batch; returns once it is durable.
    pub async fn record(&self, event: NewEvent) -> Result<(), VaultError> {
        self.record_all(vec![event], Vec::new()).await
    }

    /// Writes several events, in order, with the next batch; returns once they are durable.
    pub async fn record_many(&self, events: Vec<NewEvent>) -> Result<(), VaultError> {
        self.record_all(events, Vec::new()).await
    }

    /// How many events the log holds (the head's sequence number).
    pub async fn audit_event_count(&self) -> Result<i64, VaultError> {
        let row = sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&self.inner.pool)
            .await?;
        Ok(row.try_get("seq")?)
    }

    /// The newest events matching `filter`, newest first, at most `limit`.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, VaultError> {
        // No stored event holds a NUL (appends replace it), and PostgreSQL refuses one in a
        // query: such a filter matches nothing, whichever surface built it.
        let texts = [&filter.org, &filter.action, &filter.actor, &filter.target];
        if texts
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "SELECT seq, at, actor, org, category, action, target, outcome, details FROM audit_events WHERE 1 = 1",
        );
        let mut binds: Vec<String> = Vec::new();
        let mut add = |col: &str, v: Option<&str>| {
            if let Some(v) = v {
                binds.push(v.to_owned());
                sql.push_str(&format!(" AND {col} = ${}", binds.len()));
            }
        };
        add("org", filter.org.as_deref());
        add("action", filter.action.as_deref());
        add("outcome", filter.outcome.map(Outcome::as_str));
        add("actor", filter.actor.as_deref());
        add("target", filter.target.as_deref());
        if let Some(category) = filter.category {
            let mut placeholders = Vec::new();
            for c in category.covers() {
                binds.push(c.as_str().to_owned());
                placeholders.push(format!("${}", binds.len()));
            }
            sql.push_str(&format!(" AND category IN ({})", placeholders.join(", ")));
        }
        let n = binds.len();
        sql.push_str(&format!(
            " AND seq < ${} AND at >= ${} ORDER BY seq DESC LIMIT ${}",
            n + 1,
            n + 2,
            n + 3
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(filter.before.unwrap_or(i64::MAX))
            .bind(filter.since.map_or(i64::MIN, |t| t.0))
            .bind(limit.max(0))
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Recomputes the whole chain. Finds edited, inserted, reordered or deleted events, and a
    /// truncated tail (the head records the last sequence number and link).
    pub async fn verify_events(&self) -> Result<VerifyReport, VaultError> {
        let chain = self.chain()?;
        let head = sqlx::query("SELECT seq, link, mac FROM audit_head WHERE id = 1")
            .fetch_one(&self.inner.pool)
            .await?;
        let head_seq: i64 = head.try_get("seq")?;
        let head_link: Vec<u8> = head.try_get("link")?;
        let mac: Option<Vec<u8>> = head.try_get("mac")?;
        let mut report = VerifyReport {
            checked: 0,
            head_seq,
            problem: None,
        };
        let head_ok = mac.is_some_and(|mac| {
            chain.verify(
                b"audit-head",
                &[&head_seq.to_be_bytes()[..], &head_link].concat(),
                &mac,
            )
        });
        if !head_ok {
            report.problem = Some((
                head_seq,
                "the head of the log was altered (events removed from its end?)".into(),
            ));
            return Ok(report);
        }
        let mut prev = GENESIS.to_vec();
        let mut expected_seq = 1i64;
        let mut last_seq = 0i64;
        // Page through the log up to the head read above, so memory stays flat however long it
        // is, and events appended meanwhile do not look like tampering.
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor, org, category, action, target, outcome, details, link \
                 FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 1000",
            )
            .bind(last_seq)
            .bind(head_seq)
            .fetch_all(&self.inner.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let seq: i64 = row.try_get("seq")?;
                let link: Vec<u8> = row.try_get("link")?;
                let details_text: String = row.try_get("details")?;
                last_seq = seq;
                if seq != expected_seq {
                    report.problem = Some((
                        expected_seq,
                        format!("event {expected_seq} is missing (next is {seq})"),
                    ));
                    return Ok(report);
                }
                // The payload from the stored text as it is (no need to parse the details).
                let ok = match stored_payload(row, seq, &details_text) {
                    Ok(payload) => chain.verify(&prev, &payload, &link),
                    Err(_) => false,
                };
                if !ok {
                    report.problem = Some((seq, format!("event {seq} was altered")));
                    return Ok(report);
                }
                report.checked += 1;
                prev = link;
                expected_seq += 1;
            }
        }
        if last_seq != head_seq || prev != head_link {
            report.problem = Some((
                last_seq + 1,
                format!(
                    "the log ends at event {last_seq} but its head says {head_seq}: events were removed"
                ),
            ));
        }
        Ok(report)
    }
}

/// What an event's link covers, from its stored columns; a category or outcome that is not
/// one of ours fails (and so does the check). The details are covered as stored text, so they
/// are not parsed.
fn stored_payload(row: &AnyRow, seq: i64, details: &str) -> Result<Vec<u8>, VaultError> {
    let mut event = event_columns(row)?;
    event.seq = seq;
    Ok(event.payload(details))
}

fn event_from_row(row: &AnyRow) -> Result<AuditEvent, VaultError> {
    let details: String = row.try_get("details")?;
    Ok(AuditEvent {
        details: serde_json::from_str(&details).map_err(|_| bad_event("details"))?,
        ..event_columns(row)?
    })
}

/// An event's columns but its details (left `null`).
fn event_columns(row: &AnyRow) -> Result<AuditEvent, VaultError> {
    let category: String = row.try_get("category")?;
    let outcome: String = row.try_get("outcome")?;
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        at: Millis(row.try_get("at")?),
        actor: row.try_get("actor")?,
        org: row.try_get("org")?,
        category: category.parse().map_err(|_| bad_event("category"))?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: outcome.parse().map_err(|_| bad_event("outcome"))?,
        details: serde_json::Value::Null,
    })
}

fn bad_event(what: &str) -> VaultError {
    VaultError::InvalidInput(format!("stored audit event has a bad {what}"))
}
