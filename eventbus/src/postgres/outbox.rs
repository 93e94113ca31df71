//! The outbox: events written as rows in the caller's transaction, relayed to Redis once the
//! transaction commits.

use std::time::{Duration, UNIX_EPOCH};

use sqlx::{PgConnection, PgPool};

use super::errors::explain;
use super::settings::{Settings, table_setters};
use super::tables::Tables;
use crate::envelope::Envelope;
use crate::error::{PublishError, PublishErrorKind};
use crate::event::Event;
use crate::observe::{self, Produce};
use crate::transport::When;

/// A transactional outbox on PostgreSQL: give it to
/// [`EventBusBuilder::outbox`](crate::EventBusBuilder::outbox), then publish with
/// [`EventBus::outbox`](crate::EventBus::outbox) inside your own transaction. The event exists
/// if and only if the transaction commits; a relay inside the service (one active per outbox
/// across every instance) takes committed rows to Redis.
///
/// ```no_run
/// # use eventbus::{Event, EventBus, Outbox};
/// # #[derive(serde::Serialize, serde::Deserialize, Event)] #[event(durable)] struct OrderPlaced { order_id: i64 }
/// # async fn run(pool: sqlx::PgPool) -> anyhow::Result<()> {
/// let bus = EventBus::builder()
///     .service("orders")
///     .outbox(Outbox::postgres(pool.clone()))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind(7_i64).execute(&mut *tx).await?;
/// bus.outbox().publish(&mut tx, OrderPlaced { order_id: 7 }).await?;
/// tx.commit().await?; // the event exists if and only if the order does
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    pub(crate) settings: Settings,
    pub(crate) relay: RelayOptions,
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub(crate) struct RelayOptions {
    /// Whether this bus runs a relay at all.
    pub(crate) enabled: bool,
    /// How often the relay looks for rows when no notification woke it, and how often a
    /// standing-by relay tries to take over.
    pub(crate) poll_interval: Duration,
    /// How many rows the relay reads, publishes and removes at once.
    pub(crate) batch_size: usize,
    /// After how long without draining an outbox with rows in it counts as stalled.
    pub(crate) stalled_after: Duration,
}

/// Bounds of the relay's options.
const POLL_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(60));
const MAX_BATCH: usize = 10_000;

impl Outbox {
    /// An outbox in the database of `pool`, its tables created at start-up when missing.
    pub fn postgres(pool: PgPool) -> Self {
        Outbox {
            settings: Settings::new(pool),
            relay: RelayOptions {
                enabled: true,
                poll_interval: Duration::from_secs(1),
                batch_size: 1000,
                stalled_after: Duration::from_secs(30),
            },
        }
    }

    table_setters!();

    /// Whether this bus runs a relay (the default): turn it off for a service that only
    /// writes rows while others relay them.
    #[must_use]
    pub fn relay(mut self, enabled: bool) -> Self {
        self.relay.enabled = enabled;
        self
    }

    /// How often the relay looks for rows when no `NOTIFY` woke it (a lost notification is
    /// found by then), and how often a standing-by relay tries to take over: 1 s by default,
    /// from 10 ms to 60 s.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.relay.poll_interval = interval;
        self
    }

    /// How many rows the relay reads, publishes (as pipelines of up to 512) and removes at
    /// once: 1 000 by default (and never more than 16 MiB of envelopes), from 1 to 10 000.
    #[must_use]
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.relay.batch_size = rows;
        self
    }

    /// How long the first row waiting in the outbox may have been there (since it was
    /// written) before [`Health::is_up`](crate::Health::is_up) turns false: 30 s by default.
    #[must_use]
    pub fn stalled_after(mut self, after: Duration) -> Self {
        self.relay.stalled_after = after;
        self
    }

    /// What is wrong with the options, if anything.
    pub(crate) fn check(&self) -> Result<Tables, String> {
        let tables = self.settings.tables()?;
        let poll = self.relay.poll_interval;
        if poll < POLL_RANGE.0 || poll > POLL_RANGE.1 {
            return Err(format!(
                "the outbox's poll_interval of {poll:?} is out of range: from {:?} to {:?}",
                POLL_RANGE.0, POLL_RANGE.1
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.relay.batch_size) {
            return Err(format!(
                "the outbox's batch_size of {} is out of range: from 1 to {MAX_BATCH}",
                self.relay.batch_size
            ));
        }
        Ok(tables)
    }
}

/// A bus's outbox once set up: its tables, its options and what its relay saw.
pub(crate) struct OutboxState {
    pub(crate) tables: Tables,
    pub(crate) stats: std::sync::Arc<super::RelayStats>,
    pub(crate) config: Outbox,
}

/// How a row goes out: appended to a stream, or published on a channel (sharded on a Redis
/// Cluster for a type with a fixed channel, as `publish` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Stream,
    PubSub,
    Sharded,
}

impl Delivery {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Delivery::Stream => "stream",
            Delivery::PubSub => "pubsub",
            Delivery::Sharded => "sharded",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "stream" => Some(Delivery::Stream),
            "pubsub" => Some(Delivery::PubSub),
            "sharded" => Some(Delivery::Sharded),
            _ => None,
        }
    }

    fn of<E: Event>() -> Self {
        match (E::DURABLE, E::PATTERN) {
            (true, _) => Delivery::Stream,
            (false, None) => Delivery::Sharded,
            (false, Some(_)) => Delivery::PubSub,
        }
    }
}

/// One event as an outbox row: the whole envelope, its channel or stream, how it goes out.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub(crate) event_id: String,
    pub(crate) event_type: &'static str,
    pub(crate) key: String,
    pub(crate) delivery: Delivery,
    pub(crate) envelope: String,
}

impl OutboxRow {
    /// The row of an envelope from `service` (its source when empty), with the correlation and
    /// trace of the event being handled, if any, or of the current span (`otel`); refused when
    /// larger than `max_size`.
    pub(crate) fn of<E: Event>(
        mut envelope: Envelope<E>,
        service: &str,
        max_size: usize,
    ) -> Result<Self, PublishError> {
        if envelope.source.is_empty() {
            envelope.source = service.to_owned();
        }
        let refused = |what: &str, e: &dyn std::fmt::Display| {
            PublishError::new(
                PublishErrorKind::Encode,
                format!("could not {what} `{}`: {e}", E::TYPE),
            )
        };
        let key = envelope
            .data()
            .try_channel()
            .map_err(|e| refused("publish", &e))?;
        let span = observe::producer(Produce::Outbox, &key, E::TYPE, envelope.id());
        observe::stamp(&mut envelope, &span);
        let mut bytes = Vec::with_capacity(256);
        envelope
            .encode_into(&mut bytes)
            .map_err(|e| refused("encode", &e))?;
        if bytes.len() > max_size {
            return Err(PublishError::new(
                PublishErrorKind::TooLarge,
                format!(
                    "message of {} bytes exceeds the maximum of {max_size} bytes",
                    bytes.len()
                ),
            ));
        }
        let envelope_text = String::from_utf8(bytes).map_err(|e| refused("encode", &e))?;
        Ok(OutboxRow {
            event_id: envelope.id().to_owned(),
            event_type: E::TYPE,
            key: key.into_owned(),
            delivery: Delivery::of::<E>(),
            envelope: envelope_text,
        })
    }

    /// Writes `rows` on `conn` with one statement, inside whatever transaction it is in.
    pub(crate) async fn insert_all(
        rows: &[OutboxRow],
        conn: &mut PgConnection,
        tables: &Tables,
    ) -> Result<(), PublishError> {
        let outbox = tables.outbox();
        let sql = format!(
            "INSERT INTO {outbox} (event_id, event_type, key, delivery, envelope) \
             SELECT event_id, event_type, key, delivery, envelope \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             WITH ORDINALITY AS r(event_id, event_type, key, delivery, envelope, n) ORDER BY n"
        );
        let column = |f: fn(&OutboxRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        sqlx::query(&sql)
            .bind(column(|r| &r.event_id))
            .bind(column(|r| r.event_type))
            .bind(column(|r| &r.key))
            .bind(column(|r| r.delivery.as_str()))
            .bind(column(|r| &r.envelope))
            .execute(conn)
            .await
            .map_err(|e| refused(&outbox, e))?;
        Ok(())
    }

    /// Writes the row on `conn`, inside whatever transaction it is in: to be published as
    /// soon as the relay takes it, or at `when` (after a delay from now by the database's
    /// clock, or at a time), by the transport's schedule.
    pub(crate) async fn insert(
        &self,
        conn: &mut PgConnection,
        tables: &Tables,
        when: Option<When>,
    ) -> Result<(), PublishError> {
        let outbox = tables.outbox();
        let sql = format!(
            "INSERT INTO {outbox} (event_id, event_type, key, delivery, envelope, deliver_at) \
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::bigint IS NOT NULL \
             THEN clock_timestamp() + $6::bigint * interval '1 millisecond' \
             ELSE to_timestamp($7::bigint / 1000.0) END)"
        );
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let since_epoch =
            |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (delay, at) = match when {
            None => (None, None),
            Some(When::After(d)) => (Some(ms(d)), None),
            Some(When::At(t)) => (None, Some(ms(since_epoch(t)))),
        };
        sqlx::query(&sql)
            .bind(&self.event_id)
            .bind(self.event_type)
            .bind(&self.key)
            .bind(self.delivery.as_str())
            .bind(&self.envelope)
            .bind(delay)
            .bind(at)
            .execute(conn)
            .await
            .map_err(|e| refused(&outbox, e))?;
        Ok(())
    }
}

/// PostgreSQL refused rows for `outbox`: what to grant, or what went wrong.
fn refused(outbox: &str, e: sqlx::Error) -> PublishError {
    PublishError::new(
        PublishErrorKind::Database,
        explain("insert into", outbox, "INSERT", &e),
    )
    .with_source(e)
}
