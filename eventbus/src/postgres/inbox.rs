//! The inbox: which events each consumer group handled, recorded in the transaction of the
//! handler's own writes, so that a redelivery is recognised and skipped.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use super::errors::{explain, server_text};
use super::settings::{Settings, table_setters};
use super::tables::Tables;

/// An inbox on PostgreSQL: give it to [`EventBusBuilder::inbox`](crate::EventBusBuilder::inbox)
/// and let handlers take a [`Tx`](crate::Tx). For each delivery the bus opens a transaction,
/// records `(consumer group, event id)` in it, runs the handler with it, commits, and only
/// then acknowledges. An event the group recorded already is acknowledged and skipped, without
/// a run.
///
/// ```no_run
/// # use eventbus::{Event, EventBus, Inbox, Tx};
/// # #[derive(serde::Serialize, serde::Deserialize, Event)] #[event(durable)] struct OrderPlaced { order_id: i64 }
/// async fn charge(order: OrderPlaced, mut tx: Tx) -> anyhow::Result<()> {
///     sqlx::query("INSERT INTO charges (order_id) VALUES ($1)")
///         .bind(order.order_id)
///         .execute(&mut *tx)
///         .await?;
///     Ok(()) // the bus commits the charge and the inbox row together, then acknowledges
/// }
/// # async fn run(pool: sqlx::PgPool) -> anyhow::Result<()> {
/// let bus = EventBus::builder()
///     .service("billing")
///     .inbox(Inbox::postgres(pool))
///     .handler(charge)
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Inbox {
    pub(crate) settings: Settings,
    pub(crate) retention: Duration,
}

/// The shortest retention: an inbox row must outlive the redeliveries it guards against.
const MIN_RETENTION: Duration = Duration::from_secs(60);

impl Inbox {
    /// An inbox in the database of `pool`, its tables created at start-up when missing.
    pub fn postgres(pool: PgPool) -> Self {
        Inbox {
            settings: Settings::new(pool),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    table_setters!();

    /// How long a handled event's row is kept: 7 days by default, at least a minute. An event
    /// delivered again after that (a replay of old entries, say) is handled again.
    #[must_use]
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self
    }

    /// What is wrong with the options, if anything.
    pub(crate) fn check(&self) -> Result<Tables, String> {
        if self.retention < MIN_RETENTION {
            return Err(format!(
                "the inbox's retention of {:?} is shorter than the minimum of {MIN_RETENTION:?}",
                self.retention
            ));
        }
        self.settings.tables()
    }
}

/// A running inbox: the pool and its prepared tables.
#[derive(Debug)]
pub(crate) struct InboxStore {
    pub(crate) pool: PgPool,
    pub(crate) tables: Tables,
    pub(crate) retention: Duration,
    /// What the handlers' `Tx` needs to publish through the outbox.
    pub(crate) publisher: std::sync::Arc<super::tx::Publisher>,
}

/// Why a handler's transaction could not be opened, closed or checked: the text to report, and
/// whether it was the connection's (the server unreachable: the run is made again after a
/// pause) or the server's answer (the run failed: the retry policy applies).
#[derive(Debug)]
pub(crate) struct TxError {
    pub(crate) text: String,
    pub(crate) connection: bool,
}

impl TxError {
    fn new(text: String, e: &sqlx::Error) -> Self {
        TxError {
            text,
            connection: super::errors::code(e)
                .is_none_or(|c| c.starts_with("08") || c.starts_with("57P")),
        }
    }
}

/// How opening a handler's transaction went.
pub(crate) enum Opened {
    /// The event is new to the group: its row is written in this transaction.
    New(Transaction<'static, Postgres>),
    /// The group handled the event already.
    Seen,
}

impl InboxStore {
    /// Opens a transaction and records `event_id` for `group` in it (nothing is recorded for a
    /// message without an envelope id). A second consumer of the same entry waits here until
    /// the first commits (then it is `Seen`) or rolls back.
    pub(crate) async fn open(
        &self,
        group: &str,
        event_id: Option<&str>,
    ) -> Result<Opened, TxError> {
        let inbox = self.tables.inbox();
        let mut tx = self.pool.begin().await.map_err(|e| {
            TxError::new(
                format!("could not open a transaction: {}", server_text(&e)),
                &e,
            )
        })?;
        let Some(event_id) = event_id else {
            return Ok(Opened::New(tx));
        };
        let sql = format!(
            "INSERT INTO {inbox} (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
        let done = sqlx::query(&sql)
            .bind(group)
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| TxError::new(explain("insert into", &inbox, "INSERT", &e), &e))?;
        if done.rows_affected() == 0 {
            return Ok(Opened::Seen);
        }
        Ok(Opened::New(tx))
    }

    /// Checks, before the commit, that the handler's transaction is still whole: not aborted
    /// by a statement that failed (PostgreSQL would answer the commit with a rollback), and
    /// still holding its inbox row (no `COMMIT` or `ROLLBACK` sent through the `Tx`).
    pub(crate) async fn check(
        &self,
        tx: &mut sqlx::PgConnection,
        group: &str,
        event_id: Option<&str>,
    ) -> Result<(), TxError> {
        let found: Result<i64, _> = match event_id {
            Some(id) => {
                let sql = format!(
                    "SELECT count(*) FROM {} WHERE consumer_group = $1 AND event_id = $2",
                    self.tables.inbox()
                );
                let query = sqlx::query_scalar(&sql).bind(group).bind(id);
                query.fetch_one(tx).await
            }
            None => sqlx::query_scalar("SELECT 1::bigint").fetch_one(tx).await,
        };
        match found {
            Ok(n) if n > 0 || event_id.is_none() => Ok(()),
            Ok(_) => Err(TxError {
                text: "the handler's transaction lost its inbox row (a COMMIT or ROLLBACK sent \
                       through the Tx?): nothing of it is taken as done"
                    .to_owned(),
                connection: false,
            }),
            Err(e) => Err(TxError::new(
                format!(
                    "the handler's transaction cannot commit: {} (a statement in it failed, \
                     and PostgreSQL aborted it)",
                    server_text(&e)
                ),
                &e,
            )),
        }
    }

    /// Deletes rows older than the retention, a bounded batch at a time; returns how many.
    pub(crate) async fn purge(&self) -> Result<u64, String> {
        let inbox = self.tables.inbox();
        let sql = format!(
            "DELETE FROM {inbox} WHERE ctid IN (SELECT ctid FROM {inbox} \
             WHERE handled_at < clock_timestamp() - $1::float8 * interval '1 second' LIMIT 10000)"
        );
        let mut total = 0;
        loop {
            let done = sqlx::query(&sql)
                .bind(self.retention.as_secs_f64())
                .execute(&self.pool)
                .await
                .map_err(|e| explain("delete from", &inbox, "DELETE", &e))?;
            total += done.rows_affected();
            if done.rows_affected() < 10_000 {
                return Ok(total);
            }
        }
    }
}
