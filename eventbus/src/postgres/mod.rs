//! Consistency with your database: a transactional outbox and inbox on PostgreSQL (feature
//! `postgres`, sqlx 0.8).
//!
//! - [`Outbox`]: events written as rows in the caller's transaction and relayed to Redis after
//!   it commits, by one active relay per outbox among the service's instances.
//! - [`Inbox`] and [`Tx`]: a handler runs in a transaction the bus opened with the
//!   `(consumer group, event id)` row in it; the bus commits, then acknowledges, and skips an
//!   event the group handled already.
//!
//! The guarantees, and what they do not cover, are in the crate docs' "Consistency with your
//! database".

mod errors;
mod inbox;
mod outbox;
mod publish;
mod relay;
mod relay_stats;
mod schema;
mod settings;
mod status;
mod tables;
mod tx;

pub use inbox::Inbox;
pub use outbox::Outbox;
pub use relay_stats::OutboxMetrics;
pub use schema::schema_sql;
pub use status::OutboxStatus;
pub(crate) use status::watch;
pub use tx::{OutboxReceipt, Tx};

pub(crate) use errors::{code as server_code, server_text};
pub(crate) use inbox::{InboxStore, Opened, TxError};
pub(crate) use outbox::{OutboxRow, OutboxState};
pub(crate) use relay::{Relay, Report};
pub(crate) use relay_stats::RelayStats;
pub(crate) use tx::{Publisher, scope};

#[cfg(test)]
mod tests {
    fn send<T: Send>(_: T) {}

    /// `EventBusBuilder::connect` awaits these: their futures must be `Send` for a caller
    /// that spawns it (sqlx's executor bounds can make them not so).
    #[tokio::test]
    async fn the_set_up_futures_are_send() {
        let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let settings = super::settings::Settings::new(pool.clone());
        let tables = super::tables::Tables::default();
        send(super::schema::migrate(&pool, &tables, None));
        send(super::schema::verify(&pool, &tables));
        send(settings.prepare());
    }
}
