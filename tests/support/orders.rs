//! The orders → billing pair of the outbox and inbox tests, examples and soak: the events, the
//! services' own tables, and a PostgreSQL pool.

use serde::{Deserialize, Serialize};

use crate::postgres::Postgres;
use crate::redis_server::RedisServer;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// An order was placed: written through the orders service's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventbus::Event)]
#[event(name = "order_placed", durable)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: i64,
    /// Its total, in cents.
    pub total: i64,
}

/// Billing charged an order: published by billing's handler through its own outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventbus::Event)]
#[event(name = "payment_taken", durable)]
pub struct PaymentTaken {
    /// The order charged.
    pub order_id: i64,
}

/// A price changed: a pub/sub event, which may go through the outbox too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventbus::Event)]
#[event(name = "price_changed")]
pub struct PriceChanged {
    /// The product.
    pub sku: i64,
}

/// A pool on `url` with room for a relay, a listener and a few handlers.
///
/// # Panics
///
/// When PostgreSQL cannot be reached.
pub async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("could not connect to {url}: {e}"))
}

/// Creates the services' own tables: `orders` and `charges` (one row per charge, no key on the
/// order, so that a double charge shows as two rows).
///
/// # Panics
///
/// When PostgreSQL refuses.
pub async fn create_tables(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, total bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS charges (id bigserial PRIMARY KEY, order_id bigint NOT NULL,
             consumer text NOT NULL DEFAULT '');",
    )
    .execute(pool)
    .await
    .expect("create the orders and charges tables");
}

/// How many rows `sql` (a `SELECT count(*) ...`) counts.
///
/// # Panics
///
/// When the query fails.
pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A throwaway PostgreSQL with the services' tables, a pool on it, and a redis-server: what
/// the outbox and inbox tests start with. Both servers stop when it is dropped.
#[derive(Debug)]
pub struct World {
    /// The PostgreSQL server.
    pub pg: Postgres,
    /// The redis-server.
    pub redis: RedisServer,
    /// A pool on the `postgres` database.
    pub pool: PgPool,
}

/// Starts a [`World`]; `None` (after saying why) when a server is not installed.
///
/// # Panics
///
/// When a server does not start, or in CI when one is missing.
pub async fn world() -> Option<World> {
    let pg = Postgres::start_or_skip()?;
    let redis = RedisServer::start_or_skip()?;
    let pool = pool(&pg.url()).await;
    create_tables(&pool).await;
    Some(World { pg, redis, pool })
}
