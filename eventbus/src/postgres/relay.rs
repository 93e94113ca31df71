//! The relay: takes committed outbox rows to Redis, in sequence order, and removes them once
//! Redis acknowledged them.
//!
//! One relay per outbox is active: the one whose connection holds the outbox's advisory lock.
//! The others stand by and try the lock every poll interval; a relay process that dies closes
//! its connection, the lock goes with it, and a standby takes over at its next try. The
//! active relay wakes on `NOTIFY` (sent by a trigger when a row is inserted, delivered at
//! commit) and polls as a fallback.
//!
//! Rows are read in sequence order among those committed, and deleted once published, so a
//! transaction that took its sequence numbers early and commits late is published when it
//! commits, never skipped; a service's transactions, one after another, are published in
//! their commit order. A crash between Redis's acknowledgement and the delete publishes the
//! rows again with the same envelope ids, which an inbox recognises.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use super::errors::server_text;
use super::outbox::RelayOptions;
use super::publish::{Published, RelayRow, publish};
use super::relay_stats::{Every, RelayStats};
use super::tables::Tables;
use crate::error::Failure;
use crate::transport::Transport;

/// The most envelope bytes one batch holds (beyond its first row): a batch of large events
/// stays bounded in memory whatever `batch_size` says.
const BATCH_BYTES: i64 = 16 * 1024 * 1024;

/// Where the relay reports what goes wrong.
pub(crate) type Report = Arc<dyn Fn(Failure) + Send + Sync>;

/// One bus's relay.
pub(crate) struct Relay {
    pub(crate) pool: PgPool,
    pub(crate) tables: Tables,
    pub(crate) options: RelayOptions,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) max_message_size: usize,
    pub(crate) stats: Arc<RelayStats>,
    pub(crate) report: Report,
    /// This instance's name, shown as the holder of the relay.
    pub(crate) name: String,
    pub(crate) cancel: CancellationToken,
}

/// Why the active relay stepped down.
enum Stop {
    Cancelled,
    Database(sqlx::Error),
}

impl Relay {
    /// Stands by, leads when it holds the lock, and stands by again when its connection
    /// fails, until cancelled.
    pub(crate) async fn run(self) {
        let mut standby: Option<PgConnection> = None;
        let mut sample = Every::new(self.options.poll_interval);
        while !self.cancel.is_cancelled() {
            if sample.due() {
                self.sample().await;
            }
            match self.try_lead(&mut standby).await {
                Ok(Some(conn)) => match self.lead(conn).await {
                    Stop::Cancelled => return,
                    Stop::Database(e) => self.failed("lost its database connection", &e),
                },
                Ok(None) => {}
                Err(e) => {
                    standby = None;
                    self.failed("could not reach the database", &e);
                }
            }
            if self.pause(self.options.poll_interval).await {
                return;
            }
        }
    }

    /// The connection holding the relay's lock, when this relay got it.
    async fn try_lead(
        &self,
        standby: &mut Option<PgConnection>,
    ) -> Result<Option<PgConnection>, sqlx::Error> {
        let mut conn = match standby.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let sql = format!(
            "SELECT pg_try_advisory_lock({})",
            self.tables.relay_lock_sql()
        );
        let got: bool = sqlx::query_scalar(&sql).fetch_one(&mut conn).await?;
        if got {
            return Ok(Some(conn));
        }
        *standby = Some(conn);
        Ok(None)
    }

    /// The relay's own connection, which holds the lock. Its commits do not wait for the WAL
    /// flush (`synchronous_commit = off`): a delete lost in a crash only publishes its rows
    /// again, with the same ids, which at-least-once allows. The server checks that the relay
    /// is still there while a statement runs or waits (`client_connection_check_interval`),
    /// and over TCP keep-alives when idle, so the lock of a relay that died goes within
    /// seconds; no statement runs longer than a minute.
    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let options: PgConnectOptions = (*self.pool.connect_options())
            .clone()
            .application_name(&format!("eventbus relay {}", self.name))
            .options([
                ("synchronous_commit", "off"),
                ("client_connection_check_interval", "1000"),
                ("tcp_keepalives_idle", "10"),
                ("tcp_keepalives_interval", "5"),
                ("tcp_keepalives_count", "3"),
                ("statement_timeout", "60000"),
            ]);
        PgConnection::connect_with(&options).await
    }

    /// Relays while the lock's connection lives.
    async fn lead(&self, mut conn: PgConnection) -> Stop {
        self.stats
            .active
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(outbox = %self.tables.outbox(), "the outbox relay is active here");
        let mut listener = self.listen().await;
        let mut sample = Every::new(self.options.poll_interval);
        let stop = loop {
            if let Err(e) = self.drain(&mut conn, &mut sample).await {
                break e;
            }
            if sample.due() {
                self.sample().await;
            }
            if self.wait(&mut listener).await {
                break Stop::Cancelled;
            }
        };
        self.stats
            .active
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = conn.close().await;
        stop
    }

    /// A listener on the outbox's channel; without one the relay only polls.
    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(l) => l,
            Err(e) => {
                self.failed("could not listen for new rows, polls only", &e);
                return None;
            }
        };
        match listener.listen(&self.tables.channel()).await {
            Ok(()) => Some(listener),
            Err(e) => {
                self.failed("could not listen for new rows, polls only", &e);
                None
            }
        }
    }

    /// Waits for a notification, the poll interval or cancellation; true when cancelled.
    async fn wait(&self, listener: &mut Option<PgListener>) -> bool {
        let poll = self.options.poll_interval;
        let Some(l) = listener else {
            return self.pause(poll).await;
        };
        tokio::select! {
            _ = self.cancel.cancelled() => true,
            _ = tokio::time::sleep(poll) => false,
            r = l.recv() => {
                if r.is_err() {
                    // The listener reconnects on its next call; a poll finds what was missed.
                    return self.pause(poll).await;
                }
                false
            }
        }
    }

    /// Sleeps `d` unless cancelled first; true when cancelled.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// Relays batches until the outbox is empty (or Redis stops taking them, then after a
    /// pause at the next wake). Redis's work and PostgreSQL's overlap: while one batch is
    /// published, the one before it is removed and the next one read.
    async fn drain(&self, conn: &mut PgConnection, sample: &mut Every) -> Result<(), Stop> {
        let mut batch = self.read(conn, &[]).await.map_err(Stop::Database)?;
        let mut done: Option<(Vec<RelayRow>, Published)> = None;
        while !batch.is_empty() {
            if self.cancel.is_cancelled() {
                return Err(Stop::Cancelled);
            }
            // Under steady load the drain does not end: the metrics are sampled from here too.
            if sample.due() {
                self.sample().await;
            }
            let in_flight: Vec<i64> = batch.iter().map(|r| r.seq).collect();
            let publishing = publish(&*self.transport, &batch, self.max_message_size);
            let database = async {
                if let Some((rows, published)) = done.take() {
                    self.settle(conn, &rows, &published).await?;
                }
                self.read(conn, &in_flight).await
            };
            let (mut published, next) = tokio::join!(publishing, database);
            let next = next.map_err(Stop::Database)?;
            let error = published.error.take();
            done = Some((batch, published));
            if let Some(e) = error {
                return self.redis_failed(conn, done, e).await;
            }
            batch = next;
        }
        match done {
            Some((rows, published)) => self.settle(conn, &rows, &published).await,
            None => Ok(()),
        }
        .map_err(Stop::Database)
    }

    /// Removes what was published before Redis failed, reports, and pauses.
    async fn redis_failed(
        &self,
        conn: &mut PgConnection,
        done: Option<(Vec<RelayRow>, Published)>,
        e: crate::transport::TransportError,
    ) -> Result<(), Stop> {
        if let Some((rows, published)) = done {
            self.settle(conn, &rows, &published)
                .await
                .map_err(Stop::Database)?;
        }
        let error = format!("Redis did not take the outbox's rows: {e}");
        (self.report)(Failure::Relay { error });
        match self.pause(self.options.poll_interval).await {
            true => Err(Stop::Cancelled),
            false => Ok(()),
        }
    }

    /// The next batch, oldest sequence number first, without the rows being published: at
    /// most `batch_size` rows, and no more rows than fit in [`BATCH_BYTES`] (one at least).
    async fn read(
        &self,
        conn: &mut PgConnection,
        in_flight: &[i64],
    ) -> Result<Vec<RelayRow>, sqlx::Error> {
        let sql = format!(
            "SELECT seq, event_id, key, delivery, envelope, \
               (extract(epoch FROM deliver_at) * 1000)::bigint FROM ( \
               SELECT *, sum(octet_length(envelope)) OVER (ORDER BY seq) AS upto FROM {} \
               WHERE NOT (seq = ANY($2)) ORDER BY seq LIMIT $1) AS b \
             WHERE upto - octet_length(envelope) < $3 ORDER BY seq",
            self.tables.outbox()
        );
        let rows = sqlx::query(&sql)
            .bind(self.options.batch_size as i64)
            .bind(in_flight)
            .bind(BATCH_BYTES)
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RelayRow {
                    seq: r.try_get(0)?,
                    event_id: r.try_get(1)?,
                    key: r.try_get(2)?,
                    delivery: r.try_get(3)?,
                    envelope: r.try_get(4)?,
                    deliver_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Removes the published rows and moves the poison aside, in one transaction.
    async fn settle(
        &self,
        conn: &mut PgConnection,
        rows: &[RelayRow],
        published: &Published,
    ) -> Result<(), sqlx::Error> {
        let (outbox, poison) = (self.tables.outbox(), self.tables.poison());
        let delete = format!("DELETE FROM {outbox} WHERE seq = ANY($1)");
        if published.sent.is_empty() && published.poison.is_empty() {
            return Ok(());
        }
        if published.poison.is_empty() {
            // One statement: no transaction to open and commit around it.
            sqlx::query(&delete)
                .bind(&published.sent)
                .execute(conn)
                .await?;
            self.count(rows, published);
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        for (seq, reason) in &published.poison {
            sqlx::query(&format!(
                "INSERT INTO {poison} (seq, event_id, event_type, key, delivery, envelope, \
                 created_at, deliver_at, reason) SELECT seq, event_id, event_type, key, \
                 delivery, envelope, created_at, deliver_at, $2 FROM {outbox} WHERE seq = $1 \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(seq)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        let done: Vec<i64> = published
            .sent
            .iter()
            .copied()
            .chain(published.poison.iter().map(|(s, _)| *s))
            .collect();
        sqlx::query(&delete).bind(&done).execute(&mut *tx).await?;
        tx.commit().await?;
        self.count(rows, published);
        Ok(())
    }

    fn count(&self, rows: &[RelayRow], published: &Published) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats
            .relayed
            .fetch_add(published.sent.len() as u64, Relaxed);
        self.stats
            .poisoned
            .fetch_add(published.poison.len() as u64, Relaxed);
        for (seq, reason) in &published.poison {
            let Some(row) = rows.iter().find(|r| r.seq == *seq) else {
                continue;
            };
            tracing::error!(event_id = %row.event_id, key = %row.key, %reason, "outbox row moved to the poison table");
            (self.report)(Failure::OutboxPoison {
                event_id: row.event_id.clone(),
                key: row.key.clone(),
                reason: reason.clone(),
            });
        }
    }

    /// Samples the outbox's depth, the age of its first row and the relay's holder.
    async fn sample(&self) {
        if let Ok(status) = super::status::read(&self.pool, &self.tables).await {
            self.stats
                .sampled(status.depth, status.oldest_age, status.holder);
        }
    }

    fn failed(&self, what: &str, e: &sqlx::Error) {
        let error = format!("the relay {what}: {}", server_text(e));
        tracing::warn!(%error, "outbox relay");
        (self.report)(Failure::Relay { error });
    }
}
