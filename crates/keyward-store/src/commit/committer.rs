//! The queue and the committer: operations queue their events (and writes their place in the
//! transaction), and one task at a time takes a batch, commits it and answers everyone in it.

use std::collections::BTreeSet;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use keyward_core::audit::NewEvent;
use tokio::sync::oneshot;

use super::chain::ONE_TRIP_EVENTS;
use super::last_use::touch;
use super::write::{Turn, roll_back_to_savepoint};
use super::{Failure, Job, stopped};
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
/// The longest a committer waits for a batch to gather (the timer's granularity: a
/// millisecond), and only when the last batch held several operations.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// The operations waiting for the next batch.
#[derive(Debug, Default)]
pub(super) struct Queue {
    jobs: Vec<Job>,
    /// Whether a committer task is running (it ends when it finds the queue empty).
    running: bool,
}

impl Vault {
    /// Records `events` (and that `touched` credentials were used now) with the next batch;
    /// returns once they are durable. If they cannot be written, the caller hands nothing out.
    pub(crate) async fn record_all(
        &self,
        mut events: Vec<NewEvent>,
        touched: Vec<String>,
    ) -> Result<(), VaultError> {
        self.chain()?;
        events.iter_mut().for_each(crate::actor::tag);
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

    pub(super) fn submit(&self, job: Job) {
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
    #[tracing::instrument(name = "store.commit", level = "info", skip_all, fields(keyward.writes = jobs.len(), keyward.events = jobs.iter().map(|j| j.events.len()).sum::<usize>()))]
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
