//! `Tx`: the transaction a handler runs in, which the bus opened with the inbox row in it and
//! commits when the handler returns `Ok`.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{PgConnection, Postgres, Transaction};
use tokio::sync::oneshot;

use super::outbox::OutboxRow;
use super::tables::Tables;
use crate::envelope::Envelope;
use crate::error::{PublishError, PublishErrorKind};
use crate::event::Event;
use crate::handler::{FromContext, HandlerContext};

/// A handler's database transaction, as an extra handler argument: the bus opened it and
/// wrote the inbox row in it; the handler's own writes (through `&mut *tx`, a
/// [`PgConnection`]) and its follow-up events ([`publish`](Self::publish), through the
/// outbox) go in it too. When the handler returns `Ok` the bus commits, then acknowledges the
/// event; when it fails, panics or times out, the bus rolls back and the retry policy applies.
///
/// A handler that takes a `Tx` needs [`EventBusBuilder::inbox`](crate::EventBusBuilder::inbox);
/// [`publish`](Self::publish) needs [`EventBusBuilder::outbox`](crate::EventBusBuilder::outbox)
/// too. Keep the `Tx` within the handler: one moved elsewhere (into a spawned task) is not
/// committed, and the run fails.
pub struct Tx {
    tx: Option<Transaction<'static, Postgres>>,
    back: Option<oneshot::Sender<Transaction<'static, Postgres>>>,
    publisher: Arc<Publisher>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("service", &self.publisher.service)
            .finish_non_exhaustive()
    }
}

/// What a `Tx` needs to write outbox rows.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) service: String,
    pub(crate) max_message_size: usize,
    /// The outbox's tables, when the bus has an outbox.
    pub(crate) outbox: Option<Tables>,
}

/// What publishing into the outbox returned: the event is a row of the transaction, and
/// reaches Redis once it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxReceipt {
    /// The event id, kept when the relay publishes it (again, after a crash).
    pub id: String,
    /// The channel or stream it goes to.
    pub channel: String,
}

impl Tx {
    /// Wraps an open transaction; the transaction comes back through `back` when the `Tx` is
    /// dropped (at the end of the handler's run).
    pub(crate) fn new(
        tx: Transaction<'static, Postgres>,
        back: oneshot::Sender<Transaction<'static, Postgres>>,
        publisher: Arc<Publisher>,
    ) -> Self {
        Tx {
            tx: Some(tx),
            back: Some(back),
            publisher,
        }
    }

    /// Publishes an event through the outbox, in this transaction: it reaches Redis if and
    /// only if the handler's run commits. Its correlation and trace follow the event being
    /// handled.
    pub async fn publish<E: Event>(&mut self, event: E) -> Result<OutboxReceipt, PublishError> {
        self.publish_envelope(Envelope::new(event)).await
    }

    /// Publishes a prepared envelope through the outbox, in this transaction.
    pub async fn publish_envelope<E: Event>(
        &mut self,
        envelope: Envelope<E>,
    ) -> Result<OutboxReceipt, PublishError> {
        let publisher = self.publisher.clone();
        let Some(tables) = &publisher.outbox else {
            return Err(PublishError::new(
                PublishErrorKind::Config,
                "`Tx::publish` writes to the outbox, and this bus has none: give the builder \
                 `.outbox(Outbox::postgres(pool))`",
            ));
        };
        let row = OutboxRow::of(envelope, &publisher.service, publisher.max_message_size)?;
        row.insert(self, tables, None).await?;
        Ok(OutboxReceipt {
            id: row.event_id,
            channel: row.key,
        })
    }
}

impl Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.tx
            .as_deref()
            .expect("a Tx holds its transaction until dropped")
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.tx
            .as_deref_mut()
            .expect("a Tx holds its transaction until dropped")
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let (Some(tx), Some(back)) = (self.tx.take(), self.back.take()) {
            // Nobody waiting: the transaction rolls back as it is dropped.
            let _ = back.send(tx);
        }
    }
}

tokio::task_local! {
    /// The transaction opened for the run whose arguments are being made.
    static OPEN: RefCell<Option<Tx>>;
}

/// Runs `run`, which makes a handler's arguments and runs it, with `tx` as the run's
/// transaction.
pub(crate) async fn scope<F: Future>(tx: Tx, run: F) -> F::Output {
    OPEN.scope(RefCell::new(Some(tx)), run).await
}

impl FromContext for Tx {
    #[doc(hidden)]
    const TRANSACTION: bool = true;

    fn from_context(_: &HandlerContext) -> Result<Self, String> {
        OPEN.try_with(|open| open.borrow_mut().take())
            .ok()
            .flatten()
            .ok_or_else(|| "no transaction is open for this run: a handler takes one Tx".to_owned())
    }
}
