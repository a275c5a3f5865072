//! Group commit: the audited operations of a process share transactions, and so fsyncs.
//!
//! Every audited operation ends in a commit, and with `synchronous = FULL` (SQLite) or
//! `synchronous_commit = on` (PostgreSQL) a commit waits for the disk. One commit per operation
//! caps a store at the disk's flush rate, a few thousand a second. Here they share:
//!
//! - An operation that only records (a resolution, a reveal, a key test, a refused sign-in)
//!   hands its events, and the credentials whose last use it sets, to the queue, and waits.
//! - A write ([`Vault::begin_write`]) takes its turn in the open batch's transaction: a
//!   savepoint, its statements, its events staged beside them. [`Vault::commit`] releases the
//!   savepoint, queues the write, ends the turn and waits like the others. A write that fails
//!   (or is dropped) is rolled back to its savepoint, and the batch goes on without it.
//! - One committer, a task that runs while the queue holds work, takes the batch: it sets the
//!   last-use times, appends every event to the chain in queue order, commits, and only then
//!   answers everyone in it. What arrives during that commit is the next batch, so a lone
//!   operation waits for nobody, and sixteen at once share one flush.
//!
//! Nothing is answered before its event is durable. If the batch cannot be committed, every
//! operation in it fails, and no other: the next batch starts on a fresh transaction.
//!
//! Lock order, for PostgreSQL: rows first (the writes' own, then the last-use times, by id),
//! the audit head last, held until the commit, in every process.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use keyward_core::Millis;
use keyward_core::audit::{AuditEvent, NewEvent};
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row as _, Transaction};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, oneshot};

use keyward_crypto::ChainKey;

use crate::{Backend, Vault, VaultError};

/// The most events a batch of operations takes; the rest wait for the next commit (writes
/// already in the transaction always go with it). On PostgreSQL a batch goes in one message,
/// and sqlx 0.9 leaves Nagle's algorithm on: a message larger than the socket's send buffer
/// (16 KiB by default) is sent in two writes, and the second waits for the server's delayed
/// ACK, 40 ms. Thirty-two events stay well under it; the next batch follows at once.
fn max_batch_events(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1024,
        Backend::Postgres => 32,
    }
}
/// Rows per `INSERT` of events in the general path, for the same reason.
fn rows_per_insert(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 100,
        Backend::Postgres => 24,
    }
}
/// The most events appended in one round trip (batches without writes).
const ONE_TRIP_EVENTS: usize = 256;
/// The longest a committer waits for a batch to gather (the timer's granularity: a
/// millisecond), and only when the last batch held several operations.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(1);
/// How precisely last-use times are kept.
const USE_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(1);
/// Ids per last-use `UPDATE`.
const IDS_PER_UPDATE: usize = 500;
const SAVEPOINT: &str = "SAVEPOINT keyward_write";
const RELEASE: &str = "RELEASE SAVEPOINT keyward_write";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT keyward_write";

/// The queue and the open transaction of one vault.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// The open batch's transaction, and the right to run statements in it.
    turn: Arc<AsyncMutex<Turn>>,
    queue: std::sync::Mutex<Queue>,
    /// The chain's head as this process last wrote it, for the one-trip append; `None` when
    /// unknown (at start, after a failure, after a batch of writes without events).
    head: std::sync::Mutex<Option<Head>>,
    /// When this process last set each credential's last use.
    used: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Rung when an operation is queued, for a committer gathering a batch.
    arrived: tokio::sync::Notify,
    /// How many operations the last batch answered: as many are likely on their way back.
    last_batch: std::sync::atomic::AtomicUsize,
    /// Batches committed, and the operations answered by them, for metrics.
    pub(crate) batches: AtomicU64,
    pub(crate) operations: AtomicU64,
}

#[derive(Debug, Default)]
struct Turn {
    /// Opened by the batch's first write; taken (and committed) by the committer.
    tx: Option<Transaction<'static, Any>>,
    /// A write ended without releasing its savepoint: it is rolled back before anything else
    /// runs in `tx`.
    abandoned: bool,
    /// `tx` cannot be used any more (a savepoint statement failed): the writes already in it
    /// fail with this, and the committer starts afresh.
    broken: Option<Failure>,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Whether a committer task is running (it ends when it finds the queue empty).
    running: bool,
}

#[derive(Debug)]
struct Job {
    events: Vec<NewEvent>,
    /// Credentials whose last use is now.
    touched: Vec<String>,
    /// Whether the job's statements are in the turn's transaction (a write).
    in_tx: bool,
    /// `None` for the marker a dropped write leaves, so that its transaction is cleaned up.
    done: Option<oneshot::Sender<Result<(), Failure>>>,
}

/// Why a batch failed, for everyone in it.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The store is away (worth retrying), rather than refusing.
    unavailable: bool,
    /// It failed at `COMMIT`: the batch may or may not be saved.
    at_commit: bool,
    message: String,
}

impl Failure {
    fn new(e: &VaultError, at_commit: bool) -> Self {
        Self {
            unavailable: e.is_unavailable(),
            at_commit,
            message: e.to_string(),
        }
    }

    /// What an operation that only recorded events is told: nothing is handed out either way.
    fn for_record(self) -> VaultError {
        if self.unavailable {
            VaultError::Unavailable(self.message)
        } else {
            VaultError::AuditUnavailable(self.message)
        }
    }

    /// What a write of `what` `id` is told.
    fn for_write(self, what: &'static str, id: &str) -> VaultError {
        if self.unavailable && self.at_commit {
            VaultError::OutcomeUnknown {
                what,
                id: id.to_owned(),
            }
        } else {
            self.for_record()
        }
    }
}

/// A write's turn in the open batch: statements run on it as on a transaction (it derefs to
/// the connection). End it with [`Vault::commit`]; dropped, it is rolled back.
#[derive(Debug)]
pub(crate) struct WriteTx {
    turn: Option<OwnedMutexGuard<Turn>>,
    events: Vec<NewEvent>,
    vault: Vault,
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.turn
            .as_ref()
            .and_then(|t| t.tx.as_deref())
            .expect("a write holds its transaction until it ends")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.turn
            .as_mut()
            .and_then(|t| t.tx.as_deref_mut())
            .expect("a write holds its transaction until it ends")
    }
}

impl WriteTx {
    /// Stages `event`, to be appended to the chain with the write at the batch's commit.
    pub(crate) fn stage(&mut self, event: NewEvent) {
        self.events.push(event);
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(mut turn) = self.turn.take() {
            turn.abandoned = true;
            // Whoever runs next in the transaction rolls this write back; the marker makes
            // sure someone does, and commits (or ends) the transaction.
            self.vault.submit(Job {
                events: Vec::new(),
                touched: Vec::new(),
                in_tx: true,
                done: None,
            });
        }
    }
}

impl Vault {
    /// Begins a write: waits for its turn in the open batch's transaction (opening it if this
    /// is the batch's first write). Hold no other turn, and wait for no audited operation,
    /// until it ends: the committer needs the turn to commit.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, VaultError> {
        let mut turn = self.inner.commits.turn.clone().lock_owned().await;
        if let Some(broken) = &turn.broken {
            return Err(broken.clone().for_record());
        }
        if turn.tx.is_none() {
            turn.tx = Some(self.inner.pool.begin().await?);
        }
        // The flag is cleared only once the rollback is done: a caller that goes away in the
        // middle (its client hung up) leaves it for the next one.
        let result = async {
            if turn.abandoned {
                let tx = turn.tx.as_deref_mut().expect("opened above");
                roll_back_to_savepoint(tx).await?;
                turn.abandoned = false;
            }
            let tx = turn.tx.as_deref_mut().expect("opened above");
            sqlx::query(SAVEPOINT).execute(tx).await?;
            Ok::<_, VaultError>(())
        }
        .await;
        if let Err(e) = result {
            self.break_turn(&mut turn, &e);
            return Err(e);
        }
        Ok(WriteTx {
            turn: Some(turn),
            events: Vec::new(),
            vault: self.clone(),
        })
    }

    /// Ends a write of `what` `id` (named in an unknown outcome): its changes and events join
    /// the batch, and this returns once the batch is committed.
    pub(crate) async fn commit(
        &self,
        mut tx: WriteTx,
        what: &'static str,
        id: &str,
    ) -> Result<(), VaultError> {
        // Released while `tx` still holds the turn: if this caller goes away during it, the
        // write is dropped (and so rolled back) like any other unfinished one, and its
        // statements can never be committed without its events.
        let released = sqlx::query(RELEASE)
            .execute(&mut *tx)
            .await
            .map(drop)
            .map_err(VaultError::from);
        let mut turn = tx
            .turn
            .take()
            .expect("a write holds its turn until it ends");
        if let Err(e) = released {
            self.break_turn(&mut turn, &e);
            return Err(e);
        }
        let (done, answer) = oneshot::channel();
        // Queued while the turn is held, so the queue's order is the transaction's.
        self.submit(Job {
            events: std::mem::take(&mut tx.events),
            touched: Vec::new(),
            in_tx: true,
            done: Some(done),
        });
        drop(turn);
        match answer.await {
            Ok(result) => result.map_err(|f| f.for_write(what, id)),
            Err(_) => Err(stopped()),
        }
    }

    /// Records `events` (and that `touched` credentials were used now) with the next batch;
    /// returns once they are durable. If they cannot be written, the caller hands nothing out.
    pub(crate) async fn record_all(
        &self,
        events: Vec<NewEvent>,
        touched: Vec<String>,
    ) -> Result<(), VaultError> {
        self.chain()?;
        let (done, answer) = oneshot::channel();
        self.submit(Job {
            events,
            touched,
            in_tx: false,
            done: Some(done),
        });
        match answer.await {
            Ok(result) => result.map_err(Failure::for_record),
            Err(_) => Err(stopped()),
        }
    }

    /// Whether a use of credential `id` now should be written: last-use times are kept to
    /// the second, so a key resolved thousands of times a second is written once a second
    /// (and its batches take the one-trip path).
    pub(crate) fn use_worth_writing(&self, id: &str) -> bool {
        let now = std::time::Instant::now();
        let mut used = self
            .inner
            .commits
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if used
            .get(id)
            .is_some_and(|at| now.duration_since(*at) < USE_RESOLUTION)
        {
            return false;
        }
        if used.len() >= 10_000 {
            used.clear();
        }
        used.insert(id.to_owned(), now);
        true
    }

    fn set_head(&self, head: Option<Head>) {
        *self
            .inner
            .commits
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = head;
    }

    /// A savepoint statement failed: the transaction is of no further use. The writes already
    /// in it fail with the batch; a marker job gets the committer to clear it.
    fn break_turn(&self, turn: &mut Turn, e: &VaultError) {
        turn.broken = Some(Failure::new(e, false));
        self.submit(Job {
            events: Vec::new(),
            touched: Vec::new(),
            in_tx: true,
            done: None,
        });
    }

    fn submit(&self, job: Job) {
        let commits = &self.inner.commits;
        let mut queue = commits.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.jobs.push(job);
        commits.arrived.notify_one();
        if queue.running {
            return;
        }
        // Outside a runtime nothing can await the answer; the next job starts a committer.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            queue.running = true;
            runtime.spawn(self.clone().run_commits());
        }
    }

    /// The committer: commits batches until the queue is empty.
    async fn run_commits(self) {
        loop {
            self.gather().await;
            let mut turn = self.inner.commits.turn.clone().lock_owned().await;
            let mut jobs = {
                let mut queue = self
                    .inner
                    .commits
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if queue.jobs.is_empty() {
                    queue.running = false;
                    return;
                }
                take_batch(&mut queue.jobs, max_batch_events(self.inner.backend))
            };
            let (in_tx, outcome) = self.commit_batch(&mut turn, &mut jobs).await;
            drop(turn);
            let answered = jobs.iter().filter(|j| j.done.is_some()).count();
            self.inner
                .commits
                .last_batch
                .store(answered, Ordering::Relaxed);
            if outcome.is_ok() {
                let commits = &self.inner.commits;
                commits.batches.fetch_add(1, Ordering::Relaxed);
                commits
                    .operations
                    .fetch_add(answered as u64, Ordering::Relaxed);
            }
            for job in jobs {
                let result = if job.in_tx && in_tx.is_err() {
                    in_tx.clone()
                } else {
                    outcome.clone()
                };
                if let Some(done) = job.done {
                    // A caller that went away (its client hung up) is not waiting.
                    let _ = done.send(result);
                }
            }
        }
    }

    /// Lets a batch gather before it is taken. Operations that arrive together share a flush,
    /// but under steady load they split into two groups that alternate: one is queued while
    /// the other's batch commits, and each pays for two commits. So when the last batch
    /// answered several operations, wait (a millisecond at most) for as many to be queued:
    /// they are the same callers coming back. A lone caller never waits.
    async fn gather(&self) {
        let commits = &self.inner.commits;
        let expect = commits.last_batch.load(Ordering::Relaxed);
        if expect <= 1 {
            // Let the operations that are ready to join this batch join it.
            tokio::task::yield_now().await;
            return;
        }
        let deadline = tokio::time::Instant::now() + GATHER_WAIT;
        loop {
            let queued = {
                let queue = commits.queue.lock().unwrap_or_else(PoisonError::into_inner);
                queue.jobs.iter().filter(|j| j.done.is_some()).count()
            };
            if queued >= expect
                || tokio::time::timeout_at(deadline, commits.arrived.notified())
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    /// Commits one batch. The first result is for the writes in the turn's transaction (an
    /// error if that transaction broke), the second for everything committed.
    async fn commit_batch(
        &self,
        turn: &mut Turn,
        jobs: &mut [Job],
    ) -> (Result<(), Failure>, Result<(), Failure>) {
        let mut tx = turn.tx.take();
        let mut in_tx = match turn.broken.take() {
            Some(broken) => Err(broken),
            None => Ok(()),
        };
        if std::mem::take(&mut turn.abandoned)
            && in_tx.is_ok()
            && let Some(conn) = tx.as_deref_mut()
            && let Err(e) = roll_back_to_savepoint(conn).await
        {
            in_tx = Err(Failure::new(&e, false));
        }
        if in_tx.is_err() {
            // Dropping it rolls it back.
            tx = None;
        }
        let mut events = Vec::new();
        let mut touched = BTreeSet::new();
        for job in jobs.iter_mut() {
            if job.in_tx && in_tx.is_err() {
                continue;
            }
            events.append(&mut job.events);
            touched.extend(job.touched.drain(..));
        }
        if events.is_empty() && touched.is_empty() && tx.is_none() {
            return (in_tx, Ok(()));
        }
        // Events alone, after the head this process wrote last: one round trip.
        let cached = self
            .inner
            .commits
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if tx.is_none()
            && touched.is_empty()
            && events.len() <= ONE_TRIP_EVENTS
            && let Some(head) = cached
        {
            match self.append_in_one_trip(&head, &events).await {
                Ok(head) => {
                    self.set_head(Some(head));
                    return (in_tx, Ok(()));
                }
                // Away: the outcome is unknown, and the batch fails (retrying might append
                // its events twice).
                Err(e) if e.is_unavailable() => {
                    let failure = Failure::new(&e, true);
                    self.mark_unavailable();
                    return (in_tx, Err(failure));
                }
                // Refused (the head moved): nothing was written; the general path follows.
                Err(e) => {
                    tracing::debug!(error = %e, "one-trip append refused; appending after the stored head")
                }
            }
        }
        let outcome = async {
            let mut tx = match tx {
                Some(tx) => tx,
                None => self
                    .inner
                    .pool
                    .begin()
                    .await
                    .map_err(|e| Failure::new(&VaultError::from(e), false))?,
            };
            touch(&mut tx, &touched).await?;
            let head = self.append_events(&mut tx, &events).await?;
            tx.commit()
                .await
                .map_err(|e| Failure::new(&VaultError::from(e), true))?;
            Ok::<_, Failure>(head)
        }
        .await;
        let outcome = outcome.map(|head| self.set_head(head));
        if let Err(f) = &outcome {
            if f.unavailable {
                self.mark_unavailable();
            }
            if f.at_commit {
                tracing::error!(error = %f.message, "the store went away at commit; the outcome is unknown");
                // Nothing the batch's writes may have changed is fresh any more; it is kept
                // only to serve while the store is away (which is what this most often is),
                // and read again as soon as the store answers.
                self.inner.cache.expire_all();
            }
        }
        (in_tx, outcome)
    }

    /// Appends `events` to the chain in `tx`, in order: the head first (it takes the write
    /// lock, or the row lock), then the rows, then the head's new link. Returns the new head.
    async fn append_events(
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
    async fn append_in_one_trip(
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

/// The jobs of the next batch: every write already in the transaction, and operations in
/// arrival order up to `max_events`.
fn take_batch(queue: &mut Vec<Job>, max_events: usize) -> Vec<Job> {
    let mut taken = Vec::new();
    let mut left = Vec::new();
    let mut events = 0;
    for job in queue.drain(..) {
        if job.in_tx || events < max_events {
            events += job.events.len();
            taken.push(job);
        } else {
            left.push(job);
        }
    }
    *queue = left;
    taken
}

/// Sets the last use of `ids` (sorted, so replicas lock them in one order) to now.
async fn touch(tx: &mut Transaction<'static, Any>, ids: &BTreeSet<String>) -> Result<(), Failure> {
    let now = Millis::now().0;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for chunk in ids.chunks(IDS_PER_UPDATE) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE credentials SET last_used_at = $1 WHERE id IN ({}) \
             AND (last_used_at IS NULL OR last_used_at < $1)",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for id in chunk {
            query = query.bind(*id);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| Failure::new(&VaultError::from(e), false))?;
    }
    Ok(())
}

async fn roll_back_to_savepoint(conn: &mut AnyConnection) -> Result<(), VaultError> {
    sqlx::query(ROLLBACK_TO).execute(&mut *conn).await?;
    sqlx::query(RELEASE).execute(conn).await?;
    Ok(())
}

fn stopped() -> VaultError {
    VaultError::AuditUnavailable("the audit writer stopped before the batch was committed".into())
}
