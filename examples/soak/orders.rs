//! The PostgreSQL-backed pair of the soak: each publisher process also places orders, the
//! order row and its `soak_order` event in one transaction (the outbox, relayed by one of the
//! publishers); each consumer process charges them in a handler that takes a `Tx` (the inbox).
//! PostgreSQL runs beside Redis, not behind the proxy, and is among the processes the chaos
//! kills. The accounting reads the tables: every committed order is charged exactly once, and
//! nothing exists for an order that does not.

use std::time::Duration;

use eventbus::{DurableOptions, Event, EventBusBuilder, HandlerOptions, Inbox, Outbox, Tx};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::accounting::Row;

/// An order, placed through the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "soak_order", durable)]
pub(crate) struct SoakOrder {
    order: String,
}

/// A pool that gives up on a dead server quickly, so a publisher goes on placing (and
/// failing) while PostgreSQL is away.
pub(crate) async fn pool(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await?)
}

/// The services' own tables.
pub(crate) async fn create_tables(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE soak_orders (id text PRIMARY KEY);
         CREATE TABLE soak_charges (order_id text NOT NULL, consumer text NOT NULL);",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A publisher's builder with the outbox (and its relay).
pub(crate) fn with_outbox(builder: EventBusBuilder, pool: &PgPool) -> EventBusBuilder {
    builder.outbox(Outbox::postgres(pool.clone()).poll_interval(Duration::from_millis(200)))
}

/// A bus that only relays the outbox, for the drain.
pub(crate) async fn relay(url: &str, pool: &PgPool) -> anyhow::Result<eventbus::EventBus> {
    let builder = with_outbox(eventbus::EventBus::builder().service("soak-relay"), pool);
    Ok(builder.connect(url).await?)
}

/// A consumer's builder with the inbox and the charging handler.
pub(crate) fn with_inbox(builder: EventBusBuilder, pool: &PgPool) -> EventBusBuilder {
    let options = HandlerOptions::new()
        .name("charge")
        .durable(DurableOptions::new().claim_idle(crate::workload::CLAIM_IDLE));
    builder
        .inbox(Inbox::postgres(pool.clone()))
        .handler_with(options, charge)
}

async fn charge(order: SoakOrder, mut tx: Tx) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO soak_charges (order_id, consumer) VALUES ($1, $2)")
        .bind(&order.order)
        .bind(std::process::id().to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Places order `id`: its row and its event commit together, or neither does.
pub(crate) async fn place(bus: &eventbus::EventBus, pool: &PgPool, id: &str) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO soak_orders (id) VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let order = SoakOrder {
        order: id.to_owned(),
    };
    bus.outbox().publish(&mut tx, order).await?;
    tx.commit().await?;
    Ok(())
}

/// The order ids in the events of a `XRANGE events:soak_order - +` reply.
pub(crate) fn stream_ids(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|l| l.split("\"order\":\"").nth(1))
        .filter_map(|t| t.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Whether every order is charged and the outbox is empty (the drain waits for it).
pub(crate) async fn settled(pool: &PgPool) -> bool {
    let sql = "SELECT (SELECT count(*) FROM soak_orders o WHERE NOT EXISTS \
               (SELECT 1 FROM soak_charges c WHERE c.order_id = o.id)) \
               + (SELECT count(*) FROM eventbus_outbox)";
    matches!(
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await,
        Ok(0)
    )
}

async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// The accounting of the pair, from the tables and the ids of the order stream's events.
pub(crate) async fn check(pool: &PgPool, stream_ids: &[String]) -> anyhow::Result<Vec<Row>> {
    let placed: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT id FROM soak_orders")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let unknown = stream_ids.iter().filter(|id| !placed.contains(*id)).count();
    let orders = count(pool, "SELECT count(*) FROM soak_orders").await?;
    let once = count(
        pool,
        "SELECT count(*) FROM soak_orders o WHERE \
         (SELECT count(*) FROM soak_charges c WHERE c.order_id = o.id) = 1",
    )
    .await?;
    let orphans = count(
        pool,
        "SELECT count(*) FROM soak_charges c WHERE NOT EXISTS \
         (SELECT 1 FROM soak_orders o WHERE o.id = c.order_id)",
    )
    .await?;
    let waiting = count(pool, "SELECT count(*) FROM eventbus_outbox").await?;
    let aside = count(pool, "SELECT count(*) FROM eventbus_outbox_poison").await?;
    Ok(vec![
        Row::new(
            "orders: every committed order charged exactly once",
            "soak_orders, soak_charges".into(),
            format!("{once} of {orders} charged once"),
            "all".into(),
            once == orders && orders > 0,
        ),
        Row::new(
            "orders: nothing without its order",
            "soak_charges, events:soak_order".into(),
            format!(
                "{orphans} charges and {unknown} of {} events of unknown orders",
                stream_ids.len()
            ),
            "0, 0".into(),
            orphans == 0 && unknown == 0,
        ),
        Row::new(
            "orders: the outbox drained, nothing set aside",
            "eventbus_outbox".into(),
            format!("{waiting} waiting, {aside} poison"),
            "0, 0".into(),
            waiting == 0 && aside == 0,
        ),
    ])
}
