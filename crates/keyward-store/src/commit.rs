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

use crate::{Vault, VaultError};

/// The most events an operation-only batch takes; the rest wait for the next commit (writes
/// already in the transaction always go with it).
const MAX_BATCH_EVENTS: usize = 1024;
/// Rows per `INSERT` of events (ten parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 100;
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
        let abandoned = std::mem::take(&mut turn.abandoned);
        let result = async {
            let tx = turn.tx.as_deref_mut().expect("opened above");
            if abandoned {
                roll_back_to_savepoint(tx).await?;
            }
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
        let mut turn = tx
            .turn
            .take()
            .expect("a write holds its turn until it ends");
        let released = match turn.tx.as_deref_mut() {
            Some(conn) => sqlx::query(RELEASE)
                .execute(conn)
                .await
                .map(drop)
                .map_err(VaultError::from),
            None => Err(VaultError::AuditUnavailable(
                "the write lost its transaction".into(),
            )),
        };
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
            // Let the operations that are ready to join this batch join it.
            tokio::task::yield_now().await;
            let mut turn = self.inner.commits.turn.clone().lock_owned().await;
            let jobs = {
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
                take_batch(&mut queue.jobs)
            };
            let mut jobs = jobs;
            let (in_tx, outcome) = self.commit_batch(&mut turn, &mut jobs).await;
            drop(turn);
            if outcome.is_ok() {
                let commits = &self.inner.commits;
                let answered = jobs.iter().filter(|j| j.done.is_some()).count() as u64;
                commits.batches.fetch_add(1, Ordering::Relaxed);
                commits.operations.fetch_add(answered, Ordering::Relaxed);
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
            self.append_events(&mut tx, events).await?;
            tx.commit()
                .await
                .map_err(|e| Failure::new(&VaultError::from(e), true))
        }
        .await;
        if let Err(f) = &outcome {
            if f.unavailable {
                self.mark_unavailable();
            }
            if f.at_commit {
                tracing::error!(error = %f.message, "the store went away at commit; the outcome is unknown");
                // Nothing stays served that the batch's writes may have changed.
                self.inner.cache.invalidate();
            }
        }
        (in_tx, outcome)
    }

    /// Appends `events` to the chain in `tx`, in order: the head first (it takes the write
    /// lock, or the row lock), then the rows, then the head's new link.
    async fn append_events(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: Vec<NewEvent>,
    ) -> Result<(), Failure> {
        if events.is_empty() {
            return Ok(());
        }
        let audit_err = |e: VaultError| {
            let e = if e.is_unavailable() {
                e
            } else {
                VaultError::AuditUnavailable(e.to_string())
            };
            Failure::new(&e, false)
        };
        let chain = self.chain().map_err(audit_err)?;
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let head =
            sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, link")
                .bind(n)
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| audit_err(e.into()))?;
        let last: i64 = head.try_get("seq").map_err(|e| audit_err(e.into()))?;
        let mut link: Vec<u8> = head.try_get("link").map_err(|e| audit_err(e.into()))?;
        let at = Millis::now();
        let mut rows = Vec::with_capacity(events.len());
        for (seq, event) in (last - n + 1..).zip(events) {
            let mut event = AuditEvent {
                seq,
                at,
                actor: event.actor,
                org: event.org,
                category: event.category,
                action: event.action,
                target: event.target,
                outcome: event.outcome,
                details: event.details,
            };
            // Details may carry a message that named what a caller sent; nothing that looks
            // like a key is written, whatever path it came by.
            keyward_core::secret_like::scrub_json(&mut event.details);
            for text in [&mut event.actor, &mut event.target] {
                if keyward_core::secret_like::looks_like_secret(text) {
                    *text = keyward_core::secret_like::scrub(text);
                }
            }
            let details = event.details.to_string();
            link = chain.link(&link, &event.payload(&details)).to_vec();
            rows.push((event, details, link.clone()));
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO audit_events \
                 (seq, at, actor, org, category, action, target, outcome, details, link) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 10;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9,
                    p + 10
                ));
            }
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (event, details, link) in chunk {
                query = query
                    .bind(event.seq)
                    .bind(event.at.0)
                    .bind(event.actor.as_str())
                    .bind(event.org.as_deref())
                    .bind(event.category.as_str())
                    .bind(event.action.as_str())
                    .bind(event.target.as_str())
                    .bind(event.outcome.as_str())
                    .bind(details.as_str())
                    .bind(link.as_slice());
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(|e| audit_err(e.into()))?;
        }
        sqlx::query("UPDATE audit_head SET link = $1, mac = $2 WHERE id = 1")
            .bind(link.as_slice())
            .bind(crate::audit::head_mac(chain, last, &link).to_vec())
            .execute(&mut **tx)
            .await
            .map_err(|e| audit_err(e.into()))?;
        Ok(())
    }
}

/// The jobs of the next batch: every write already in the transaction, and operations in
/// arrival order up to [`MAX_BATCH_EVENTS`].
fn take_batch(queue: &mut Vec<Job>) -> Vec<Job> {
    let mut taken = Vec::new();
    let mut left = Vec::new();
    let mut events = 0;
    for job in queue.drain(..) {
        if job.in_tx || events < MAX_BATCH_EVENTS {
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
