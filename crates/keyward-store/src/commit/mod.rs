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
//!
//! - `write`: a write's turn in the open batch's transaction (savepoints, and the rollback of
//!   a write that fails or is dropped);
//! - `committer`: the queue, and the task that takes batches from it and commits them;
//! - `chain`: the batch's events sealed into the audit chain and appended, in one round trip
//!   when this process wrote the head last;
//! - `last_use`: credentials' last-use times, written at most once a second each.

mod chain;
mod committer;
mod last_use;
mod write;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use keyward_core::audit::NewEvent;
use tokio::sync::{Mutex as AsyncMutex, oneshot};

use crate::VaultError;
use chain::Head;
use committer::Queue;
use write::Turn;
pub(crate) use write::WriteTx;

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

fn stopped() -> VaultError {
    VaultError::AuditUnavailable("the audit writer stopped before the batch was committed".into())
}
