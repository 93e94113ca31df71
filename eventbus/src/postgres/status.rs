//! An outbox's state as PostgreSQL holds it, readable by any process: the relay samples it for
//! the bus's metrics, and `Outbox::status` reads it for tools (the CLI's `monitor`).

use std::time::Duration;

use sqlx::{PgPool, Row};

use super::outbox::Outbox;
use super::tables::Tables;
use crate::error::{QueryError, QueryErrorKind};

/// The outbox as PostgreSQL holds it: see [`Outbox::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStatus {
    /// Rows waiting to be relayed (counted up to 100 000).
    pub depth: u64,
    /// How long the first row in line has waited, when there is one.
    pub oldest_age: Option<Duration>,
    /// Rows set aside in the poison table.
    pub poisoned: u64,
    /// The instance whose relay is active (its consumer name), when one is.
    pub holder: Option<String>,
    /// Rows removed from the outbox (relayed or set aside) since the server's statistics
    /// were last reset (`pg_stat_user_tables.n_tup_del`, updated within about a second): two
    /// readings give the relay's rate.
    pub removed: u64,
}

impl Outbox {
    /// Reads the outbox's state from PostgreSQL: how many rows wait and for how long, how many
    /// were set aside, which instance relays, how many were removed so far. Works from any
    /// process with access to the tables, whether it runs a bus or not.
    pub async fn status(&self) -> Result<OutboxStatus, QueryError> {
        let tables = self
            .settings
            .tables()
            .map_err(|e| QueryError::new(QueryErrorKind::Database, e))?;
        read(&self.settings.pool, &tables).await.map_err(|e| {
            let text = super::errors::explain("read", &tables.outbox(), "SELECT", &e);
            QueryError::new(QueryErrorKind::Database, text).with_source(e)
        })
    }
}

/// Samples the outbox into `stats` every `every`, for a bus that runs no relay: its metrics
/// and health still show the outbox it writes into. Runs until its task is ended.
pub(crate) async fn watch(
    pool: PgPool,
    tables: Tables,
    stats: std::sync::Arc<super::RelayStats>,
    every: Duration,
) {
    loop {
        if let Ok(status) = read(&pool, &tables).await {
            stats.sampled(status.depth, status.oldest_age, status.holder);
        }
        tokio::time::sleep(every).await;
    }
}

/// Reads the status of the outbox in `tables`.
pub(crate) async fn read(pool: &PgPool, tables: &Tables) -> Result<OutboxStatus, sqlx::Error> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM {outbox} LIMIT 100000) AS c), \
         (SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM {outbox} \
          ORDER BY seq LIMIT 1), \
         (SELECT count(*) FROM {poison}), \
         (SELECT substr(a.application_name, 16) FROM pg_locks l \
          JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' \
          AND l.granted AND l.classid::bigint = {class} \
          AND l.objid = '{outbox}'::regclass::oid AND l.objsubid = 2 LIMIT 1), \
         (SELECT coalesce(n_tup_del, 0) FROM pg_stat_user_tables \
          WHERE relid = '{outbox}'::regclass)",
        outbox = tables.outbox(),
        poison = tables.poison(),
        class = super::tables::RELAY_LOCK_CLASS,
    );
    let row = sqlx::query(&sql).fetch_one(pool).await?;
    let age: Option<f64> = row.try_get(1)?;
    Ok(OutboxStatus {
        depth: row.try_get::<i64, _>(0)? as u64,
        oldest_age: age.map(|s| Duration::from_secs_f64(s.max(0.0))),
        poisoned: row.try_get::<i64, _>(2)? as u64,
        holder: row.try_get(3)?,
        removed: row.try_get::<Option<i64>, _>(4)?.unwrap_or(0) as u64,
    })
}
