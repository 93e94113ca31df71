//! A run in a database transaction, for a handler that takes a [`Tx`]: the transaction is
//! opened with the inbox row in it, the handler runs with it, and it is committed when the
//! run succeeds (rolled back otherwise) before the event is acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sqlx::{Postgres, Transaction};
use tokio::sync::oneshot;

use super::Runtime;
use super::slot::Slot;
use crate::error::FailureCause;
use crate::postgres::{InboxStore, Opened, Tx, TxError};

/// How one transactional attempt ended, when the handler did not fail.
pub(crate) enum Ran {
    /// The handler returned `Ok` and its transaction committed.
    Handled,
    /// The group handled this event already: nothing ran.
    Duplicate,
    /// PostgreSQL could not be reached to open, run or commit the transaction: the run does
    /// not count as an attempt, and is made again after a pause.
    Unreachable(String),
}

/// The inbox row of one run: the store, the handler's scope and the event id.
struct Row<'a> {
    store: &'a InboxStore,
    group: &'a str,
    event_id: Option<&'a str>,
}

/// One attempt of a transactional handler for the event `event_id`: `attempt` is the attempt
/// itself, run with the transaction as the run's.
pub(crate) async fn attempt(
    rt: &Runtime,
    slot: &Slot,
    event_id: Option<&str>,
    attempt: impl Future<Output = Result<(), FailureCause>>,
) -> Result<Ran, FailureCause> {
    let (Some(store), Some(group)) = (rt.inbox.as_ref(), slot.inbox_scope.as_deref()) else {
        return Err(FailureCause::Extract(
            "the handler takes a Tx, and this bus has no inbox".to_owned(),
        ));
    };
    let row = Row {
        store,
        group,
        event_id,
    };
    let tx = match store.open(group, event_id).await {
        Ok(Opened::New(tx)) => tx,
        Ok(Opened::Seen) => {
            slot.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Ran::Duplicate);
        }
        Err(e) => return settle(e),
    };
    let (back, returned) = oneshot::channel();
    let tx = Tx::new(tx, back, store.publisher.clone());
    let result = crate::postgres::scope(tx, attempt).await;
    finish(result, returned, &row).await
}

/// Checks and commits after a successful run, rolls back after a failed one. A run that
/// failed on a transaction whose connection is gone failed for the database's sake, not the
/// event's.
async fn finish(
    result: Result<(), FailureCause>,
    mut returned: oneshot::Receiver<Transaction<'static, Postgres>>,
    row: &Row<'_>,
) -> Result<Ran, FailureCause> {
    match (result, returned.try_recv()) {
        (Ok(()), Ok(tx)) => commit(tx, row).await,
        (Ok(()), Err(_)) => Err(failure(
            "the handler kept its Tx past its run (moved it into another task?): nothing was \
             committed"
                .to_owned(),
        )),
        (Err(cause), Ok(mut tx)) => {
            // An aborted transaction still answers (with an error); a lost connection does not.
            let probe = sqlx::query("SELECT 1").execute(&mut *tx).await;
            let lost = matches!(&probe, Err(e) if crate::postgres::server_code(e).is_none());
            let _ = tx.rollback().await;
            match probe {
                Err(e) if lost => Ok(Ran::Unreachable(format!(
                    "the run failed ({cause}) on a lost connection: {}",
                    crate::postgres::server_text(&e)
                ))),
                _ => Err(cause),
            }
        }
        (Err(cause), Err(_)) => Err(cause),
    }
}

/// Commits a run's transaction once it is checked whole; a commit the server refused (a
/// deferred constraint, a serialization failure) is the run's failure.
async fn commit(
    mut tx: Transaction<'static, Postgres>,
    row: &Row<'_>,
) -> Result<Ran, FailureCause> {
    if let Err(e) = row.store.check(&mut tx, row.group, row.event_id).await {
        let _ = tx.rollback().await;
        return settle(e);
    }
    match tx.commit().await {
        Ok(()) => Ok(Ran::Handled),
        Err(e) => settle(TxError {
            text: format!("could not commit: {}", crate::postgres::server_text(&e)),
            connection: crate::postgres::server_code(&e)
                .is_none_or(|c| c.starts_with("08") || c.starts_with("57P")),
        }),
    }
}

/// The connection's trouble is a pause; the server's answer is the run's failure.
fn settle(e: TxError) -> Result<Ran, FailureCause> {
    match e.connection {
        true => Ok(Ran::Unreachable(e.text)),
        false => Err(failure(e.text)),
    }
}

fn failure(text: String) -> FailureCause {
    FailureCause::Error(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
        text,
    )))
}
