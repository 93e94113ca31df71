//! A service's tests run its handlers that take a `Tx` with the test kit: `TestBus` on the
//! in-process transport, the inbox (and the outbox) on a throwaway PostgreSQL.

use eventbus::testing::TestBus;
use eventbus::{Envelope, EventBus, Inbox, Outbox, Tx};
use eventbus_suite::orders::{self, OrderPlaced, PaymentTaken};
use eventbus_suite::postgres::Postgres;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_charges_each_order_once_in_its_transaction() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let pool = orders::pool(&pg.url()).await;
    orders::create_tables(&pool).await;
    let builder = EventBus::builder()
        .service("billing")
        .outbox(Outbox::postgres(pool.clone()))
        .inbox(Inbox::postgres(pool.clone()))
        .handler(charge);
    let kit = TestBus::start(builder).await.unwrap();
    let order = Envelope::new(OrderPlaced {
        order_id: 7,
        total: 700,
    })
    .with_id("order-7");
    kit.inject(order.clone()).await;
    kit.inject(order).await; // delivered twice: the inbox skips the second
    let settled = kit.settle().await;
    assert!(settled.failures.is_empty(), "{settled}");
    assert_eq!(
        orders::count(&pool, "SELECT count(*) FROM charges").await,
        1
    );
    // The follow-up went through the outbox; the kit's relay published it.
    let relayed = eventbus_suite::wait_for(std::time::Duration::from_secs(10), || {
        !kit.published::<PaymentTaken>().is_empty()
    })
    .await;
    assert!(relayed, "the follow-up was not relayed");
    assert_eq!(kit.published::<PaymentTaken>()[0].data().order_id, 7);
    kit.shutdown().await;
}
