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
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// How many events one listing reads back at most before it answers with what it found and a
/// cursor to continue: a filter that matches rarely (an actor that is nobody) must not read
/// through the whole log for a viewer. About 1-3 us an event, so a few tens of milliseconds.
pub const SCAN_BUDGET: i64 = 10_000;

/// How long a listing waits for its lane before it is refused as busy.
const LANE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The lanes listings run in: one at a time per organization (or for the admins' all-org
/// view), and at most a quarter of the pool's connections for all of them together. One
/// tenant's loop of listings then waits on itself, and never holds the connections that
/// other tenants' requests (and the store's health) need.
#[derive(Debug)]
pub(crate) struct Lanes {
    all: std::sync::Arc<tokio::sync::Semaphore>,
    per_scope:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
}

impl Lanes {
    pub(crate) fn new(pool_connections: u32) -> Self {
        Self {
            all: std::sync::Arc::new(tokio::sync::Semaphore::new(
                (pool_connections as usize / 4).max(1),
            )),
            per_scope: Default::default(),
        }
    }

    /// Waits (up to [`LANE_WAIT`]) for a turn in `scope`'s lane and in the shared one.
    async fn enter(
        &self,
        scope: &str,
    ) -> Result<
        (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
        VaultError,
    > {
        let own = {
            let mut map = self.per_scope.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1_000 {
                // Lanes nobody is in or waiting for.
                map.retain(|_, s| std::sync::Arc::strong_count(s) > 1);
            }
            map.entry(scope.to_owned())
                .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(1)))
                .clone()
        };
        let busy = || {
            VaultError::Busy(
                "too many audit-log reads are running at once; retry in a second".into(),
            )
        };
        let deadline = tokio::time::Instant::now() + LANE_WAIT;
        let own = tokio::time::timeout_at(deadline, own.acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let all = tokio::time::timeout_at(deadline, self.all.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        Ok((own, all))
    }
}

/// A page of events: newest first, and where to continue.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// The events found, at most the limit asked for.
    pub items: Vec<AuditEvent>,
    /// Older events may match: pass this as `before` to continue. A page may hold fewer
    /// events than asked for (even none) and still have a cursor: the listing read back
    /// [`SCAN_BUDGET`] events and stopped there.
    pub next: Option<i64>,
}

/// Loads the chain key, creating it on first use (then `.1` is true: the store is new). Returns
/// `None` (and the vault refuses audited writes) when the stored key cannot be unwrapped with
/// the configured master keys.
pub(crate) async fn load_or_create_chain_key(
    pool: &AnyPool,
    keyring: &Keyring,
) -> Result<(Option<ChainKey>, bool), VaultError> {
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
    let mut created = false;
    let wrapped: Vec<u8> = match existing {
        Some(row) => row.try_get("wrapped")?,
        None => {
            let dek = DataKey::generate()?;
            let wrapped = keyring.wrap(&dek, CHAIN_KEY_RECORD)?;
            // Two processes may race to create it: the first insert wins, and both read it back.
            created = sqlx::query(
                "INSERT INTO vault_keys (name, kid, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(CHAIN_KEY_NAME)
            .bind(keyring.primary_kid().as_str())
            .bind(wrapped)
            .bind(Millis::now().0)
            .execute(pool)
            .await?
            .rows_affected()
                == 1;
            sqlx::query("SELECT wrapped FROM vault_keys WHERE name = $1")
                .bind(CHAIN_KEY_NAME)
                .fetch_one(pool)
                .await?
                .try_get("wrapped")?
        }
    };
    let Ok(dek) = keyring.unwrap(&wrapped, CHAIN_KEY_RECORD) else {
        return Ok((None, created));
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
    Ok((Some(chain), created))
}

/// The MAC of the chain's head. "audit-head" stands where a previous link would, and its length
/// differs from a link's, so a head MAC never equals an event link.
pub(crate) fn head_mac(chain: &ChainKey, seq: i64, link: &[u8]) -> [u8; 32] {
    chain.link(b"audit-head", &[&seq.to_be_bytes()[..], link].concat())
}

/// What `events verify` found.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    /// Events checked.
    pub checked: u64,
    /// The sequence number recorded as the head of the chain.
    pub head_seq: i64,
    /// The first problem, if any: sequence number and what is wrong.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<serde_json::Value>>))]
    pub problem: Option<(i64, String)>,
    /// Where the check began: 0 for the whole chain, else the verified checkpoint it went on
    /// from (events up to it were not read again).
    #[serde(default)]
    pub from_seq: i64,
    /// Events up to this one were pruned (by the retention policy): the chain is proved from
    /// the sealed record of where it then began. 0: nothing was pruned.
    #[serde(default)]
    pub pruned_through: i64,
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

    /// The newest events matching `filter`, newest first, at most `limit`, reading back at
    /// most [`SCAN_BUDGET`] events (see [`Vault::list_events_page`] for the cursor).
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, VaultError> {
        Ok(self.list_events_page(filter, limit).await?.items)
    }

    /// The newest events matching `filter`, newest first, at most `limit`, with a cursor when
    /// older ones may match. The cost is bounded whatever the log's size: a filter the
    /// indexes answer (organization, target) reads only what it returns; any other reads back
    /// at most [`SCAN_BUDGET`] events and answers what it found there. Listings take turns
    /// per organization ([`Lanes`]); one that waits too long is [`VaultError::Busy`].
    #[tracing::instrument(name = "store.list_events", level = "info", skip_all)]
    pub async fn list_events_page(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<EventPage, VaultError> {
        // No stored event holds a NUL (appends replace it), and PostgreSQL refuses one in a
        // query: such a filter matches nothing, whichever surface built it.
        let texts = [&filter.org, &filter.action, &filter.actor, &filter.target];
        if texts
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            return Ok(EventPage::default());
        }
        let limit = limit.max(0);
        let _turn = self
            .inner
            .audit_lanes
            .enter(filter.org.as_deref().unwrap_or("*"))
            .await?;
        let mut conn = self.inner.pool.acquire().await?;
        let before = filter.before.unwrap_or(i64::MAX);
        // Every row the indexes find matches: no budget needed.
        let indexed_only = filter.action.is_none()
            && filter.outcome.is_none()
            && filter.actor.is_none()
            && filter.category.is_none()
            && filter.since.is_none();
        // Otherwise, the window the budget allows: the SCAN_BUDGET newest events before the
        // cursor, in the order of the index the listing walks (organization, target, or the
        // log itself), found without reading the rows.
        let window = if indexed_only {
            None
        } else {
            let mut sql = String::from(
                "SELECT MIN(seq) AS lo, COUNT(*) AS n FROM (SELECT seq FROM audit_events WHERE seq < $1",
            );
            let mut binds: Vec<&str> = Vec::new();
            for (col, v) in [("org", &filter.org), ("target", &filter.target)] {
                if let Some(v) = v {
                    binds.push(v);
                    sql.push_str(&format!(" AND {col} = ${}", binds.len() + 1));
                }
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}) w", binds.len() + 2));
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(before);
            for b in binds {
                q = q.bind(b);
            }
            let row = q.bind(SCAN_BUDGET).fetch_one(&mut *conn).await?;
            let lo: Option<i64> = row.try_get("lo")?;
            let n: i64 = row.try_get("n")?;
            let Some(lo) = lo else {
                return Ok(EventPage::default());
            };
            // Events are appended in time order: when the window already reaches back past
            // `since`, nothing older can match.
            let mut more = n == SCAN_BUDGET;
            if let (true, Some(since)) = (more, filter.since) {
                let at: i64 = sqlx::query("SELECT at FROM audit_events WHERE seq = $1")
                    .bind(lo)
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get("at")?;
                more = at >= since.0;
            }
            Some((lo, more))
        };
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
            " AND seq < ${} AND seq >= ${} AND at >= ${} ORDER BY seq DESC LIMIT ${}",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(before)
            .bind(window.map_or(i64::MIN, |(lo, _)| lo))
            .bind(filter.since.map_or(i64::MIN, |t| t.0))
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        let items = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let full = items.len() as i64 == limit && limit > 0;
        let next = match (full, window) {
            (true, _) => items.last().map(|e| e.seq),
            // The budget ran out before the log did: continue below the window.
            (false, Some((lo, true))) => Some(lo),
            (false, _) => None,
        };
        Ok(EventPage { items, next })
    }

    /// Recomputes the whole chain. Finds edited, inserted, reordered or deleted events, and a
    /// truncated tail (the head records the last sequence number and link).
    pub async fn verify_events(&self) -> Result<VerifyReport, VaultError> {
        let chain = self.chain()?;
        let (head_seq, head_link) = match self.verified_head(chain).await? {
            Ok(head) => head,
            Err(report) => return Ok(report),
        };
        let (base_seq, base_link) = match self.base(chain).await? {
            Ok(base) => base.unwrap_or((0, GENESIS.to_vec())),
            Err(problem) => return Ok(broken(head_seq, problem)),
        };
        let mut report = VerifyReport {
            head_seq,
            pruned_through: base_seq,
            ..VerifyReport::default()
        };
        let end = self
            .verify_range(chain, base_seq, base_link, head_seq, &mut report)
            .await?;
        if report.problem.is_none() {
            check_end(&mut report, end, head_seq, &head_link);
        }
        Ok(report)
    }

    /// Verifies the events appended since the last verified checkpoint, at most `max_events`
    /// of them, and moves the checkpoint to where it got. What the checkpoint covers is not
    /// read again (a full [`Vault::verify_events`] is what finds an edit of an old event); the
    /// checkpoint is sealed under the chain key, so it cannot be moved without it. The cost is
    /// bounded by `max_events` whatever the log's size: the console's Audit Log page uses it.
    pub async fn verify_new_events(&self, max_events: i64) -> Result<VerifyReport, VaultError> {
        let chain = self.chain()?;
        let (head_seq, head_link) = match self.verified_head(chain).await? {
            Ok(head) => head,
            Err(report) => return Ok(report),
        };
        let (base_seq, base_link) = match self.base(chain).await? {
            Ok(base) => base.unwrap_or((0, GENESIS.to_vec())),
            Err(problem) => return Ok(broken(head_seq, problem)),
        };
        // From the checkpoint, or from where a prune left the chain if that is further.
        let (from, prev) = match self.checkpoint(chain).await? {
            Ok(Some((seq, link, _))) if seq > base_seq => (seq, link),
            Ok(_) => (base_seq, base_link),
            Err(report) => return Ok(report),
        };
        let mut report = VerifyReport {
            head_seq,
            from_seq: from,
            pruned_through: base_seq,
            ..VerifyReport::default()
        };
        if from > base_seq {
            // The chain continues from the event the checkpoint names, as it was then.
            let at: Option<Vec<u8>> = sqlx::query("SELECT link FROM audit_events WHERE seq = $1")
                .bind(from)
                .fetch_optional(&self.inner.pool)
                .await?
                .map(|r| r.try_get("link"))
                .transpose()?;
            if at.as_deref() != Some(prev.as_slice()) {
                report.problem = Some((
                    from,
                    format!("event {from}, verified before, was altered or removed"),
                ));
                return Ok(report);
            }
        }
        let to = head_seq.min(from.saturating_add(max_events.max(1)));
        let (last, link) = self
            .verify_range(chain, from, prev, to, &mut report)
            .await?;
        if report.problem.is_some() {
            return Ok(report);
        }
        if to == head_seq {
            check_end(&mut report, (last, link.clone()), head_seq, &head_link);
            if report.problem.is_some() {
                return Ok(report);
            }
        }
        if last > from {
            self.set_checkpoint(chain, last, &link).await?;
        }
        Ok(report)
    }

    /// How far the chain was last verified: the checkpoint's sequence number and when, if a
    /// checkpoint exists and its seal holds.
    pub async fn verified_checkpoint(&self) -> Result<Option<(i64, Millis)>, VaultError> {
        let chain = self.chain()?;
        Ok(match self.checkpoint(chain).await? {
            Ok(Some((seq, _, at))) => Some((seq, at)),
            _ => None,
        })
    }

    /// The head, if its MAC holds; otherwise the report that says it does not.
    async fn verified_head(
        &self,
        chain: &ChainKey,
    ) -> Result<Result<(i64, Vec<u8>), VerifyReport>, VaultError> {
        let head = sqlx::query("SELECT seq, link, mac FROM audit_head WHERE id = 1")
            .fetch_one(&self.inner.pool)
            .await?;
        let head_seq: i64 = head.try_get("seq")?;
        let head_link: Vec<u8> = head.try_get("link")?;
        let mac: Option<Vec<u8>> = head.try_get("mac")?;
        let head_ok = mac.is_some_and(|mac| {
            chain.verify(
                b"audit-head",
                &[&head_seq.to_be_bytes()[..], &head_link].concat(),
                &mac,
            )
        });
        if head_ok {
            return Ok(Ok((head_seq, head_link)));
        }
        Ok(Err(broken(
            head_seq,
            "the head of the log was altered (events removed from its end?)".into(),
        )))
    }

    /// The checkpoint (sequence number, link, when), `None` before the first; a report when
    /// its seal does not hold.
    async fn checkpoint(
        &self,
        chain: &ChainKey,
    ) -> Result<Result<Option<(i64, Vec<u8>, Millis)>, VerifyReport>, VaultError> {
        Ok(match CHECKPOINT.read(&self.inner.pool, chain).await? {
            Ok(mark) => Ok(mark),
            Err(seq) => Err(VerifyReport {
                from_seq: seq,
                ..broken(seq, "the verification checkpoint was altered".into())
            }),
        })
    }

    async fn set_checkpoint(
        &self,
        chain: &ChainKey,
        seq: i64,
        link: &[u8],
    ) -> Result<(), VaultError> {
        // Only forward: two verifications racing leave the further one.
        CHECKPOINT.write(&self.inner.pool, chain, seq, link).await
    }

    /// Checks events `from + 1 ..= to` against `prev` (the link of event `from`), a thousand
    /// at a time so memory stays flat, counting them in `report` and noting the first problem
    /// there. Returns the last event checked and its link.
    pub(crate) async fn verify_range(
        &self,
        chain: &ChainKey,
        from: i64,
        mut prev: Vec<u8>,
        to: i64,
        report: &mut VerifyReport,
    ) -> Result<(i64, Vec<u8>), VaultError> {
        let mut expected_seq = from + 1;
        let mut last_seq = from;
        // Up to the head read before, so that events appended meanwhile do not look like
        // tampering.
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor, org, category, action, target, outcome, details, link \
                 FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 1000",
            )
            .bind(last_seq)
            .bind(to)
            .fetch_all(&self.inner.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let seq: i64 = row.try_get("seq")?;
                let link: Vec<u8> = row.try_get("link")?;
                let details_text: String = row.try_get("details")?;
                if seq != expected_seq {
                    report.problem = Some((
                        expected_seq,
                        format!("event {expected_seq} is missing (next is {seq})"),
                    ));
                    return Ok((last_seq, prev));
                }
                // The payload from the stored text as it is (no need to parse the details).
                let ok = match stored_payload(row, seq, &details_text) {
                    Ok(payload) => chain.verify(&prev, &payload, &link),
                    Err(_) => false,
                };
                if !ok {
                    report.problem = Some((seq, format!("event {seq} was altered")));
                    return Ok((last_seq, prev));
                }
                report.checked += 1;
                last_seq = seq;
                prev = link;
                expected_seq += 1;
            }
        }
        Ok((last_seq, prev))
    }
}

/// A report of a problem found before any event was read.
fn broken(head_seq: i64, problem: String) -> VerifyReport {
    VerifyReport {
        head_seq,
        problem: Some((head_seq, problem)),
        ..VerifyReport::default()
    }
}

/// A point of the chain kept in a one-row table: an event's sequence number and link and when
/// it was marked, sealed with an HMAC under the chain key in a domain of its own (which differs
/// from a link's and the head's), so that it cannot be moved without the key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    table: &'static str,
    domain: &'static [u8],
}

/// How far the chain was verified (the console verifies onward from it).
const CHECKPOINT: Mark = Mark {
    table: "audit_checkpoint",
    domain: b"audit-checkpoint",
};

/// Where the chain begins once old events are pruned.
pub(crate) const BASE: Mark = Mark {
    table: "audit_base",
    domain: b"audit-base",
};

impl Mark {
    fn payload(seq: i64, link: &[u8], at: i64) -> Vec<u8> {
        [&seq.to_be_bytes()[..], link, &at.to_be_bytes()[..]].concat()
    }

    /// The mark (sequence number, link, when), `None` before the first; `Err(seq)` when its
    /// seal does not hold.
    pub(crate) async fn read<'e, E>(
        self,
        db: E,
        chain: &ChainKey,
    ) -> Result<Result<Option<(i64, Vec<u8>, Millis)>, i64>, VaultError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let Some(row) = sqlx::query(AssertSqlSafe(format!(
            "SELECT seq, link, at, mac FROM {} WHERE id = 1",
            self.table
        )))
        .fetch_optional(db)
        .await?
        else {
            return Ok(Ok(None));
        };
        let seq: i64 = row.try_get("seq")?;
        let link: Vec<u8> = row.try_get("link")?;
        let at: i64 = row.try_get("at")?;
        let mac: Vec<u8> = row.try_get("mac")?;
        if !chain.verify(self.domain, &Self::payload(seq, &link, at), &mac) {
            return Ok(Err(seq));
        }
        Ok(Ok(Some((seq, link, Millis(at)))))
    }

    /// Moves the mark to event `seq` (whose link is `link`), sealed now; never back.
    pub(crate) async fn write<'e, E>(
        self,
        db: E,
        chain: &ChainKey,
        seq: i64,
        link: &[u8],
    ) -> Result<(), VaultError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let at = Millis::now().0;
        let mac = chain.link(self.domain, &Self::payload(seq, link, at));
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {t} (id, seq, link, at, mac) VALUES (1, $1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, link = excluded.link, \
             at = excluded.at, mac = excluded.mac WHERE {t}.seq < excluded.seq",
            t = self.table
        )))
        .bind(seq)
        .bind(link.to_vec())
        .bind(at)
        .bind(mac.to_vec())
        .execute(db)
        .await?;
        Ok(())
    }
}

/// After the last event: the log must end where its head says.
fn check_end(
    report: &mut VerifyReport,
    (last_seq, prev): (i64, Vec<u8>),
    head_seq: i64,
    head_link: &[u8],
) {
    if last_seq != head_seq || prev != head_link {
        report.problem = Some((
            last_seq + 1,
            format!(
                "the log ends at event {last_seq} but its head says {head_seq}: events were removed"
            ),
        ));
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

pub(crate) fn event_from_row(row: &AnyRow) -> Result<AuditEvent, VaultError> {
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
