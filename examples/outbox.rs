//! Consistency with your database: two services on PostgreSQL and Redis.
//!
//! - **orders** places orders: the order row and its `OrderPlaced` event commit in one
//!   transaction (the outbox), or neither does; its relay takes committed events to Redis.
//! - **billing** charges each order in a handler that takes a `Tx`: the charge, the inbox row
//!   and the `PaymentTaken` follow-up commit together, then the entry is acknowledged. An order
//!   event delivered twice is skipped by the inbox.
//!
//! ```text
//! cargo run --example outbox                  # starts a throwaway PostgreSQL and redis-server
//! DATABASE_URL=postgres://me@localhost/shop REDIS_URL=redis://127.0.0.1:6379 cargo run --example outbox
//! ```

use std::time::Duration;

use anyhow::Context;
use eventbus::{Envelope, EventBus, Inbox, Outbox, Tx};
use eventbus_suite::orders::{self, OrderPlaced, PaymentTaken};
use eventbus_suite::postgres::Postgres;
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use sqlx::PgPool;

const ORDERS: i64 = 20;

/// billing's handler: one charge per order, in the transaction the bus opened.
async fn charge(order: OrderPlaced, mut tx: Tx) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO charges (order_id) VALUES ($1)")
        .bind(order.order_id)
        .execute(&mut *tx)
        .await?;
    tx.publish(PaymentTaken {
        order_id: order.order_id,
    })
    .await?;
    Ok(())
}

/// orders places one order; every fifth customer changes their mind before the commit. The
/// event's id when it committed.
async fn place(bus: &EventBus, pool: &PgPool, id: i64) -> anyhow::Result<Option<String>> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO orders (id, total) VALUES ($1, $2)")
        .bind(id)
        .bind(id * 250)
        .execute(&mut *tx)
        .await?;
    let order = OrderPlaced {
        order_id: id,
        total: id * 250,
    };
    let receipt = bus.outbox().publish(&mut tx, order).await?;
    if id % 5 == 0 {
        tx.rollback().await?; // neither the order nor its event exists
        return Ok(None);
    }
    tx.commit().await?; // both exist
    Ok(Some(receipt.id))
}

/// The servers: those the environment names, or throwaway ones (kept alive by the guards).
type Servers = (Option<Postgres>, String, Option<RedisServer>, String);

fn servers() -> anyhow::Result<Servers> {
    let (pg, pg_url) = match std::env::var("DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            println!("starting a throwaway PostgreSQL...");
            let pg = Postgres::start_or_skip()
                .context("PostgreSQL is not installed; set DATABASE_URL")?;
            let url = pg.url();
            (Some(pg), url)
        }
    };
    let (redis, redis_url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let redis = RedisServer::start_or_skip()
                .context("redis-server is not installed; set REDIS_URL")?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    Ok((pg, pg_url, redis, redis_url))
}

/// A relay that crashed after Redis took a batch publishes it again, with the same ids; here
/// one order's event is sent again by hand. billing's inbox skips it.
async fn deliver_again(
    orders: &EventBus,
    billing: &EventBus,
    id: i64,
    event_id: String,
) -> anyhow::Result<()> {
    let order = OrderPlaced {
        order_id: id,
        total: id * 250,
    };
    orders
        .publish_envelope(Envelope::new(order).with_id(event_id))
        .await?;
    let skipped = wait_for(Duration::from_secs(30), || {
        billing.metrics().handlers.iter().any(|h| h.duplicates == 1)
    })
    .await;
    anyhow::ensure!(skipped, "the inbox did not skip the duplicate");
    println!("order {id}'s event delivered again: skipped by billing's inbox");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (_pg, pg_url, _redis, redis_url) = servers()?;
    let pool = orders::pool(&pg_url).await;
    orders::create_tables(&pool).await;

    let billing = EventBus::builder()
        .service("billing")
        .outbox(Outbox::postgres(pool.clone()))
        .inbox(Inbox::postgres(pool.clone()))
        .handler(charge)
        .connect(&redis_url)
        .await?;
    let paid = Seen::new();
    let p = paid.clone();
    let orders_bus = EventBus::builder()
        .service("orders")
        .outbox(Outbox::postgres(pool.clone()))
        .handler(move |e: PaymentTaken| {
            let p = p.clone();
            async move { p.push(e.order_id) }
        })
        .connect(&redis_url)
        .await?;
    billing.ready(Duration::from_secs(10)).await?;
    orders_bus.ready(Duration::from_secs(10)).await?;

    let mut committed = Vec::new();
    for id in 1..=ORDERS {
        if let Some(event_id) = place(&orders_bus, &pool, id).await? {
            committed.push((id, event_id));
        }
    }
    let placed = committed.len() as i64;
    println!("placed {placed} orders ({} rolled back)", ORDERS - placed);
    let all_paid = wait_for(Duration::from_secs(30), || paid.len() as i64 == placed).await;
    anyhow::ensure!(all_paid, "only {} of {placed} payments arrived", paid.len());
    let (id, event_id) = committed[0].clone();
    deliver_again(&orders_bus, &billing, id, event_id).await?;

    let charges = orders::count(&pool, "SELECT count(*) FROM charges").await;
    let rows = orders::count(&pool, "SELECT count(*) FROM orders").await;
    println!(
        "orders: {rows}, charges: {charges}, payments heard by orders: {}",
        paid.len()
    );
    for (name, bus) in [("orders", &orders_bus), ("billing", &billing)] {
        let m = bus.metrics().outbox.context("the outbox's metrics")?;
        let role = if m.active {
            "the active one"
        } else {
            "standing by"
        };
        println!("relay of {name}: relayed {}, {role}", m.relayed);
    }
    anyhow::ensure!(
        rows == placed && charges == placed,
        "every order charged exactly once"
    );
    billing.shutdown().await?;
    orders_bus.shutdown().await?;
    Ok(())
}
