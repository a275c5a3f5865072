//! A write's turn in the open batch's transaction: a savepoint, its statements and its staged
//! events; released and queued at [`Vault::commit`], rolled back to its savepoint if it fails or
//! is dropped.

use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::{OwnedMutexGuard, oneshot};

use super::{Failure, Job, stopped};
use crate::{Vault, VaultError};
use keyward_core::audit::NewEvent;

const SAVEPOINT: &str = "SAVEPOINT keyward_write";
const RELEASE: &str = "RELEASE SAVEPOINT keyward_write";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT keyward_write";

#[derive(Debug, Default)]
pub(super) struct Turn {
    /// Opened by the batch's first write; taken (and committed) by the committer.
    pub(super) tx: Option<Transaction<'static, Any>>,
    /// A write ended without releasing its savepoint: it is rolled back before anything else
    /// runs in `tx`.
    pub(super) abandoned: bool,
    /// `tx` cannot be used any more (a savepoint statement failed): the writes already in it
    /// fail with this, and the committer starts afresh.
    pub(super) broken: Option<Failure>,
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
    pub(crate) fn stage(&mut self, mut event: NewEvent) {
        crate::actor::tag(&mut event);
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
}

pub(super) async fn roll_back_to_savepoint(conn: &mut AnyConnection) -> Result<(), VaultError> {
    sqlx::query(ROLLBACK_TO).execute(&mut *conn).await?;
    sqlx::query(RELEASE).execute(conn).await?;
    Ok(())
}
