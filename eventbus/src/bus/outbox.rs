//! The bus's outbox and inbox: publishing into the outbox inside the caller's transaction, the
//! relay and the inbox's purge as the bus's own tasks, and their set-up at connect.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::PgConnection;

use super::{EventBus, PublishOptions};
use crate::envelope::Envelope;
use crate::error::{ConnectError, ConnectErrorKind, Failure, PublishError, PublishErrorKind};
use crate::event::Event;
use crate::postgres::{
    Inbox, InboxStore, Outbox, OutboxMetrics, OutboxReceipt, OutboxRow, OutboxState, Publisher,
    Relay, RelayStats, Report,
};
use crate::runtime::Hooks;
use crate::transport::{Transport, When};

/// Publishing into the bus's outbox: [`EventBus::outbox`].
#[derive(Debug, Clone, Copy)]
pub struct OutboxPublisher<'a> {
    bus: &'a EventBus,
}

impl EventBus {
    /// Publishing through the outbox given to
    /// [`EventBusBuilder::outbox`](crate::EventBusBuilder::outbox): each event becomes a row
    /// of the caller's transaction, relayed to Redis once it commits.
    pub fn outbox(&self) -> OutboxPublisher<'_> {
        OutboxPublisher { bus: self }
    }

    /// What the bus's outbox relay saw last, when the bus has an outbox.
    pub(super) fn outbox_metrics(&self) -> Option<OutboxMetrics> {
        self.inner.outbox.as_ref().map(|o| o.stats.snapshot())
    }
}

impl OutboxPublisher<'_> {
    /// Writes `event` into the outbox on `conn` (a transaction: `&mut tx`), so that it is
    /// published if and only if the transaction commits. The envelope's id is fixed now and
    /// kept by every publish of the row. Fails with [`PublishErrorKind::Database`] when
    /// PostgreSQL refuses the row (the transaction is the caller's to roll back).
    pub async fn publish<E: Event>(
        &self,
        conn: &mut PgConnection,
        event: E,
    ) -> Result<OutboxReceipt, PublishError> {
        self.publish_envelope(conn, Envelope::new(event)).await
    }

    /// [`publish`](Self::publish) with extra attributes, such as those of the event that
    /// caused it.
    pub async fn publish_with<E: Event>(
        &self,
        conn: &mut PgConnection,
        event: E,
        options: PublishOptions,
    ) -> Result<OutboxReceipt, PublishError> {
        let mut envelope = Envelope::new(event);
        options.apply(&mut envelope);
        self.publish_envelope(conn, envelope).await
    }

    /// Writes many events into the outbox on `conn` with one statement, in order: far fewer
    /// round trips than one [`publish`](Self::publish) each. Every event is encoded and checked
    /// first: one that cannot be, fails the call with nothing written.
    pub async fn publish_all<E: Event>(
        &self,
        conn: &mut PgConnection,
        events: impl IntoIterator<Item = E>,
    ) -> Result<Vec<OutboxReceipt>, PublishError> {
        let (inner, outbox) = self.outbox()?;
        let rows = events
            .into_iter()
            .map(|e| OutboxRow::of(Envelope::new(e), &inner.service, inner.max_message_size))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bus.failed(e))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        OutboxRow::insert_all(&rows, conn, &outbox.tables)
            .await
            .map_err(|e| self.bus.failed(e))?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxReceipt {
                id: r.event_id,
                channel: r.key,
            })
            .collect())
    }

    /// The bus and its outbox, or the mistake of publishing into an outbox it does not have.
    fn outbox(&self) -> Result<(&super::BusInner, &OutboxState), PublishError> {
        let inner = &*self.bus.inner;
        match &inner.outbox {
            Some(outbox) => Ok((inner, outbox)),
            None => Err(self.bus.failed(PublishError::new(
                PublishErrorKind::Config,
                "this bus has no outbox: give the builder `.outbox(Outbox::postgres(pool))`",
            ))),
        }
    }

    /// Publishes an event through the outbox later: written in `conn`'s transaction now (so
    /// it exists if and only if the transaction commits), handed by the relay to the
    /// transport's schedule once committed, due `delay` after the insert by the database's
    /// clock. See [`EventBus::publish_after`] for what the schedule guarantees.
    ///
    /// Errors: those of [`publish`](Self::publish), and a delay past ten years
    /// ([`PublishErrorKind::Config`](crate::PublishErrorKind::Config)).
    pub async fn publish_after<E: Event>(
        &self,
        conn: &mut PgConnection,
        event: E,
        delay: Duration,
    ) -> Result<OutboxReceipt, PublishError> {
        self.schedule_envelope(conn, Envelope::new(event), When::After(delay))
            .await
    }

    /// [`publish_after`](Self::publish_after) at a time (a `SystemTime`, or a
    /// `chrono::DateTime<Utc>`); a time in the past publishes it as soon as the relay takes it.
    pub async fn publish_at<E: Event>(
        &self,
        conn: &mut PgConnection,
        event: E,
        at: impl Into<SystemTime>,
    ) -> Result<OutboxReceipt, PublishError> {
        self.schedule_envelope(conn, Envelope::new(event), When::At(at.into()))
            .await
    }

    /// Writes a prepared envelope into the outbox to be published at `when` (see
    /// [`publish_after`](Self::publish_after)).
    pub async fn schedule_envelope<E: Event>(
        &self,
        conn: &mut PgConnection,
        envelope: Envelope<E>,
        when: When,
    ) -> Result<OutboxReceipt, PublishError> {
        let (inner, outbox) = self.outbox()?;
        super::schedule::check_when(when).map_err(|e| self.bus.failed(e))?;
        let row = OutboxRow::of(envelope, &inner.service, inner.max_message_size)
            .map_err(|e| self.bus.failed(e))?;
        row.insert(conn, &outbox.tables, Some(when))
            .await
            .map_err(|e| self.bus.failed(e))?;
        Ok(OutboxReceipt {
            id: row.event_id,
            channel: row.key,
        })
    }

    /// Writes a prepared envelope into the outbox on `conn`.
    pub async fn publish_envelope<E: Event>(
        &self,
        conn: &mut PgConnection,
        envelope: Envelope<E>,
    ) -> Result<OutboxReceipt, PublishError> {
        let (inner, outbox) = self.outbox()?;
        let row = OutboxRow::of(envelope, &inner.service, inner.max_message_size)
            .map_err(|e| self.bus.failed(e))?;
        row.insert(conn, &outbox.tables, None)
            .await
            .map_err(|e| self.bus.failed(e))?;
        Ok(OutboxReceipt {
            id: row.event_id,
            channel: row.key,
        })
    }
}

/// The outbox and inbox set up at connect: tables created or checked.
#[derive(Default)]
pub(super) struct Prepared {
    pub(super) outbox: Option<OutboxState>,
    pub(super) inbox: Option<Arc<InboxStore>>,
}

/// Creates or checks the tables of the outbox and inbox given to the builder.
pub(super) async fn prepare(
    outbox: Option<Outbox>,
    inbox: Option<Inbox>,
    service: String,
    max_message_size: usize,
) -> Result<Prepared, ConnectError> {
    let database = |e: String| ConnectError::new(ConnectErrorKind::Database, e);
    let mut prepared = Prepared::default();
    if let Some(config) = outbox {
        let tables = config.settings.prepare().await.map_err(database)?;
        let stats = Arc::new(RelayStats::new(config.relay.stalled_after));
        prepared.outbox = Some(OutboxState {
            tables,
            stats,
            config,
        });
    }
    if let Some(config) = inbox {
        let tables = config.settings.prepare().await.map_err(database)?;
        if let Some(outbox) = &prepared.outbox {
            same_outbox(outbox, &config).await?;
        }
        let publisher = Arc::new(Publisher {
            service,
            max_message_size,
            outbox: prepared.outbox.as_ref().map(|o| o.tables.clone()),
        });
        prepared.inbox = Some(Arc::new(InboxStore {
            pool: config.settings.pool.clone(),
            tables,
            retention: config.retention,
            publisher,
        }));
    }
    Ok(prepared)
}

/// Checks that the inbox's connections reach the outbox's table: `Tx::publish` writes into
/// the outbox inside the inbox's transaction.
async fn same_outbox(outbox: &OutboxState, inbox: &Inbox) -> Result<(), ConnectError> {
    let sql = format!(
        "SELECT current_database() || '/' || '{}'::regclass::oid::text",
        outbox.tables.outbox()
    );
    let locate = |pool: sqlx::PgPool| {
        let sql = sql.clone();
        async move { sqlx::query_scalar::<_, String>(&sql).fetch_one(&pool).await }
    };
    let there = locate(outbox.config.settings.pool.clone()).await;
    let here = locate(inbox.settings.pool.clone()).await;
    match (there, here) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Ok(_), Ok(_)) | (Ok(_), Err(_)) => Err(ConnectError::new(
            ConnectErrorKind::Config,
            format!(
                "the inbox's database does not hold the outbox `{}`: give the outbox and the \
                 inbox pools of one database, since a handler's `Tx::publish` writes into the \
                 outbox in its own transaction",
                outbox.tables.outbox()
            ),
        )),
        (Err(e), _) => Err(ConnectError::new(
            ConnectErrorKind::Database,
            crate::postgres::server_text(&e),
        )),
    }
}

/// Starts the bus's relay (when its outbox runs one) and the inbox's purge.
pub(super) fn start(bus: &EventBus) {
    let inner = &bus.inner;
    if let Some(outbox) = &inner.outbox {
        if outbox.config.relay.enabled {
            let relay = relay(outbox, inner.transport().clone(), bus);
            inner.tasks.spawn(None, relay.run());
        } else {
            let (pool, tables) = (outbox.config.settings.pool.clone(), outbox.tables.clone());
            let every = outbox.config.relay.poll_interval;
            let watch = crate::postgres::watch(pool, tables, outbox.stats.clone(), every);
            inner.tasks.spawn(None, watch);
        }
    }
    if let Some(store) = inner.runtime.inbox.clone() {
        let hooks = inner.runtime.hooks.clone();
        inner.tasks.spawn(None, purge(store, hooks));
    }
}

fn relay(outbox: &OutboxState, transport: Arc<dyn Transport>, bus: &EventBus) -> Relay {
    let hooks = bus.inner.runtime.hooks.clone();
    let report: Report = Arc::new(move |f: Failure| hooks.report(f));
    Relay {
        pool: outbox.config.settings.pool.clone(),
        tables: outbox.tables.clone(),
        options: outbox.config.relay.clone(),
        transport,
        max_message_size: bus.inner.max_message_size,
        stats: outbox.stats.clone(),
        report,
        name: bus.inner.consumer.clone(),
        cancel: bus.inner.tasks.cancelled().clone(),
    }
}

/// Deletes inbox rows past their retention: at start-up, then every tenth of the retention
/// (at most hourly).
async fn purge(store: Arc<InboxStore>, hooks: Arc<Hooks>) {
    let every = (store.retention / 10).min(Duration::from_secs(3600));
    loop {
        match store.purge().await {
            Ok(n) if n > 0 => tracing::debug!(rows = n, "inbox rows past their retention deleted"),
            Ok(_) => {}
            Err(error) => hooks.report(Failure::Inbox {
                handler: Arc::from("(inbox purge)"),
                error,
            }),
        }
        tokio::time::sleep(every).await;
    }
}
