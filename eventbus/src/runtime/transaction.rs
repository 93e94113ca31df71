//! A run in a database transaction, for a handler that takes a [`Tx`]: the transaction is
//! opened with the inbox row in it, the handler runs with it, and it is committed when the
//! run succeeds (rolled back otherwise) before the event is acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::Runtime;
use super::slot::Slot;
use crate::error::FailureCause;
use crate::postgres::{InboxStore, Opened, Tx};

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

/// One attempt of a transactional handler for the event `event_id`: `attempt` is the attempt
/// itself, run with the transaction as the run's.
pub(crate) async fn attempt(
    rt: &Runtime,
    slot: &Slot,
    event_id: Option<&str>,
    attempt: impl Future<Output = Result<(), FailureCause>>,
) -> Result<Ran, FailureCause> {
    let Some(store) = rt.inbox.as_ref() else {
        return Err(FailureCause::Extract(
            "the handler takes a Tx, and this bus has no inbox".to_owned(),
        ));
    };
    let group = scope_of(store, slot);
    let tx = match store.open(&group, event_id).await {
        Ok(Opened::New(tx)) => tx,
        Ok(Opened::Seen) => {
            slot.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Ran::Duplicate);
        }
        Err(why) => return Ok(Ran::Unreachable(why)),
    };
    let (back, returned) = oneshot::channel();
    let tx = Tx::new(tx, back, store.publisher.clone());
    let result = crate::postgres::scope(tx, attempt).await;
    finish(result, returned).await
}

/// Commits after a successful run, rolls back after a failed one. A run that failed on a
/// transaction whose connection is gone failed for the database's sake, not the event's.
async fn finish(
    result: Result<(), FailureCause>,
    mut returned: oneshot::Receiver<sqlx::Transaction<'static, sqlx::Postgres>>,
) -> Result<Ran, FailureCause> {
    let tx = returned.try_recv();
    match (result, tx) {
        (Ok(()), Ok(tx)) => match tx.commit().await {
            Ok(()) => Ok(Ran::Handled),
            Err(e) => Ok(Ran::Unreachable(format!(
                "could not commit: {}",
                crate::postgres::server_text(&e)
            ))),
        },
        (Ok(()), Err(_)) => Err(FailureCause::Error(Arc::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(
            "the handler kept its Tx past its run (moved it into another task?): nothing \
             was committed",
        )))),
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

/// The inbox's scope of a handler: its consumer group, or for a pub/sub handler the name its
/// group would have (`<service>:<name>` or `<service>:<event type>`).
fn scope_of(store: &InboxStore, slot: &Slot) -> String {
    if let Some(group) = &slot.group {
        return group.to_string();
    }
    let service = &store.publisher.service;
    match &slot.options.name {
        Some(name) => format!("{service}:{name}"),
        None => format!("{service}:{}", slot.event_type),
    }
}
