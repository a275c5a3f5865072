//! The batch's events sealed into the audit chain (numbered, scrubbed, linked under the chain
//! key) and appended: after the stored head in the batch's transaction, or in one round trip
//! after the head this process wrote last.

use std::sync::PoisonError;

use keyward_core::Millis;
use keyward_core::audit::{AuditEvent, NewEvent};
use keyward_crypto::ChainKey;
use sqlx::{Any, AssertSqlSafe, Row as _, Transaction};

use super::Failure;
use crate::{Backend, Vault, VaultError};

/// Rows per `INSERT` of events in the general path, for the same reason.
fn rows_per_insert(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 100,
        Backend::Postgres => 24,
    }
}
/// The most events appended in one round trip (batches without writes).
pub(super) const ONE_TRIP_EVENTS: usize = 256;

impl Vault {
    pub(super) fn set_head(&self, head: Option<Head>) {
        *self
            .inner
            .commits
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = head;
    }

    /// Appends `events` to the chain in `tx`, in order: the head first (it takes the write
    /// lock, or the row lock), then the rows, then the head's new link. Returns the new head.
    pub(super) async fn append_events(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[NewEvent],
    ) -> Result<Option<Head>, Failure> {
        if events.is_empty() {
            return Ok(None);
        }
        let chain = self.chain().map_err(audit_failure)?;
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let head =
            sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, link")
                .bind(n)
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| audit_failure(e.into()))?;
        let last: i64 = head.try_get("seq").map_err(|e| audit_failure(e.into()))?;
        let link: Vec<u8> = head.try_get("link").map_err(|e| audit_failure(e.into()))?;
        let sealed = Sealed::new(chain, last - n, link, events);
        for chunk in sealed.rows.chunks(rows_per_insert(self.inner.backend)) {
            let mut query = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
            for row in chunk {
                query = row.bind(query);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(|e| audit_failure(e.into()))?;
        }
        sqlx::query("UPDATE audit_head SET link = $1, mac = $2 WHERE id = 1")
            .bind(sealed.head.link.as_slice())
            .bind(sealed.head_mac.as_slice())
            .execute(&mut **tx)
            .await
            .map_err(|e| audit_failure(e.into()))?;
        Ok(Some(sealed.head))
    }

    /// A batch of events only, appended after the head this process wrote last, in one
    /// round trip: on SQLite one script (`BEGIN IMMEDIATE` ... `COMMIT`), on PostgreSQL one
    /// statement. If the head has moved since (another process appended), the insert fails
    /// on its own guard and nothing is written; the caller then takes the general path.
    pub(super) async fn append_in_one_trip(
        &self,
        head: &Head,
        events: &[NewEvent],
    ) -> Result<Head, VaultError> {
        let chain = self.chain()?;
        let sealed = Sealed::new(chain, head.seq, head.link.clone(), events);
        match self.inner.backend {
            // One statement whose rows come as one JSON parameter: the same prepared
            // statement whatever the batch's size.
            Backend::Postgres => {
                sqlx::query(AssertSqlSafe(PG_ONE_TRIP))
                    .bind(head.seq)
                    .bind(sealed.head.seq)
                    .bind(sealed.head.link.as_slice())
                    .bind(sealed.head_mac.as_slice())
                    .bind(sealed.json_rows())
                    .execute(&self.inner.pool)
                    .await?;
            }
            Backend::Sqlite => {
                let mut query = sqlx::query(AssertSqlSafe(sqlite_one_trip(sealed.rows.len())))
                    .bind(head.seq)
                    .bind(sealed.head.seq)
                    .bind(sealed.head.link.as_slice())
                    .bind(sealed.head_mac.as_slice());
                for row in &sealed.rows {
                    query = row.bind(query);
                }
                let mut conn = self.inner.pool.acquire().await?;
                if let Err(e) = query.execute(&mut *conn).await {
                    // The script stopped inside its transaction: end it, or drop the
                    // connection rather than give it back to the pool mid-transaction.
                    if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                        drop(conn.detach());
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(sealed.head)
    }
}

/// The chain's head: the last sequence number and its link.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    seq: i64,
    link: Vec<u8>,
}

/// Events with their sequence numbers and links, ready to insert.
struct Sealed {
    rows: Vec<SealedRow>,
    head: Head,
    head_mac: [u8; 32],
}

struct SealedRow {
    event: AuditEvent,
    details: String,
    link: Vec<u8>,
}

impl Sealed {
    /// Numbers `events` after `after` and chains them from `link`, all stamped now.
    fn new(chain: &ChainKey, after: i64, mut link: Vec<u8>, events: &[NewEvent]) -> Self {
        let at = Millis::now();
        let mut rows = Vec::with_capacity(events.len());
        let mut seq = after;
        for event in events {
            seq += 1;
            let mut event = AuditEvent {
                seq,
                at,
                actor: event.actor.clone(),
                org: event.org.clone(),
                category: event.category,
                action: event.action.clone(),
                target: event.target.clone(),
                outcome: event.outcome,
                details: event.details.clone(),
            };
            // Details may carry a message that named what a caller sent; nothing that looks
            // like a key is written, whatever path it came by.
            keyward_core::secret_like::scrub_json(&mut event.details);
            for text in [&mut event.actor, &mut event.target] {
                if keyward_core::secret_like::looks_like_secret(text) {
                    *text = keyward_core::secret_like::scrub(text);
                }
            }
            // PostgreSQL refuses a NUL in text, and one refused row fails its whole batch:
            // whatever a caller managed to put in a column, it cannot fail the others'.
            for text in [&mut event.actor, &mut event.target, &mut event.action]
                .into_iter()
                .chain(event.org.as_mut())
            {
                if text.contains('\0') {
                    *text = text.replace('\0', "\u{fffd}");
                }
            }
            let details = event.details.to_string();
            link = chain.link(&link, &event.payload(&details)).to_vec();
            rows.push(SealedRow {
                event,
                details,
                link: link.clone(),
            });
        }
        let head_mac = crate::audit::head_mac(chain, seq, &link);
        Self {
            rows,
            head: Head { seq, link },
            head_mac,
        }
    }
}

impl Sealed {
    /// The rows as a JSON array, for [`PG_ONE_TRIP`].
    fn json_rows(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let e = &r.event;
                serde_json::json!({
                    "seq": e.seq,
                    "at": e.at.0,
                    "actor": e.actor,
                    "org": e.org,
                    "category": e.category.as_str(),
                    "action": e.action,
                    "target": e.target,
                    "outcome": e.outcome.as_str(),
                    "details": r.details,
                    "link": hex::encode(&r.link),
                })
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }
}

impl SealedRow {
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
        let e = &self.event;
        query
            .bind(e.seq)
            .bind(e.at.0)
            .bind(e.actor.as_str())
            .bind(e.org.as_deref())
            .bind(e.category.as_str())
            .bind(e.action.as_str())
            .bind(e.target.as_str())
            .bind(e.outcome.as_str())
            .bind(self.details.as_str())
            .bind(self.link.as_slice())
    }
}

const EVENT_COLUMNS: &str = "seq, at, actor, org, category, action, target, outcome, details, link";

/// `n` rows of ten parameters, numbered from `$first`.
fn values(n: usize, first: usize) -> String {
    let mut sql = String::new();
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..10 {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", first + i * 10 + c));
        }
        sql.push(')');
    }
    sql
}

fn insert_sql(n: usize) -> String {
    format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES {}",
        values(n, 1)
    )
}

/// The one-trip append of `n` events on SQLite: `$1` the head it follows, `$2..$4` the new
/// head and its MAC, the rows from `$5`. A row's link is NULL (refused: the column is NOT
/// NULL) unless the head is still `$1`.
fn sqlite_one_trip(n: usize) -> String {
    format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO audit_events ({EVENT_COLUMNS}) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, \
         CASE WHEN (SELECT seq FROM audit_head WHERE id = 1) = $1 THEN column10 END \
         FROM (VALUES {}); \
         UPDATE audit_head SET seq = $2, link = $3, mac = $4 WHERE id = 1; \
         COMMIT",
        values(n, 5)
    )
}

/// The same on PostgreSQL, one statement (so one transaction), the rows in `$5` as JSON with
/// hex links.
const PG_ONE_TRIP: &str = "WITH head AS (UPDATE audit_head SET seq = $2, link = $3, mac = $4 \
     WHERE id = 1 AND seq = $1 RETURNING seq) \
     INSERT INTO audit_events (seq, at, actor, org, category, action, target, outcome, details, link) \
     SELECT v.seq, v.at, v.actor, v.org, v.category, v.action, v.target, v.outcome, v.details, \
     CASE WHEN EXISTS (SELECT 1 FROM head) THEN decode(v.link, 'hex') END \
     FROM json_to_recordset($5::json) AS v (seq BIGINT, at BIGINT, actor TEXT, org TEXT, \
     category TEXT, action TEXT, target TEXT, outcome TEXT, details TEXT, link TEXT) \
     ORDER BY v.seq";

/// An append that failed: the store being away is said as such (a 503 to retry); anything
/// else about the log is the log being unwritable.
fn audit_failure(e: VaultError) -> Failure {
    let e = if e.is_unavailable() {
        e
    } else {
        VaultError::AuditUnavailable(e.to_string())
    };
    Failure::new(&e, false)
}
