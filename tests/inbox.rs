//! The inbox against a real PostgreSQL and redis-server: a handler that takes a `Tx` runs in a
//! transaction with the inbox row in it; what it wrote commits before the acknowledgement, a
//! failed run leaves nothing behind, and an event its group handled already is skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventbus::{
    ConnectErrorKind, DurableOptions, EventBus, HandlerOptions, Inbox, Outbox, RetryPolicy, Tx,
};
use eventbus_suite::orders::{self, OrderPlaced, PaymentTaken, world};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{fast, wait_for};
use sqlx::PgPool;

const LIMIT: Duration = Duration::from_secs(30);

async fn charge(order: OrderPlaced, mut tx: Tx) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO charges (order_id) VALUES ($1)")
        .bind(order.order_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn charges(pool: &PgPool, order: i64) -> i64 {
    let sql = format!("SELECT count(*) FROM charges WHERE order_id = {order}");
    orders::count(pool, &sql).await
}

/// Appends `envelope` to the order stream as another entry: a publish sent twice.
fn append(redis: &RedisServer, envelope: &str) {
    redis.cli(&["XADD", "events:order_placed", "*", "envelope", envelope]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_event_delivered_again_is_skipped_and_its_effect_stays_single() {
    let Some(w) = world().await else { return };
    let billing = EventBus::builder()
        .service("billing")
        .redis_options(fast())
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler(charge)
        .connect(&w.redis.url())
        .await
        .unwrap();
    billing.ready(LIMIT).await.unwrap();
    let envelope = r#"{"specversion":"1.0","id":"order-7-placed","source":"orders","type":"order_placed","time":"2026-12-07T10:00:00Z","data":{"order_id":7,"total":700}}"#;
    append(&w.redis, envelope);
    append(&w.redis, envelope);
    append(&w.redis, envelope);
    let skipped = wait_for(LIMIT, || {
        let m = billing.metrics();
        let h = &m.handlers[0];
        h.handled == 1 && h.duplicates == 2
    })
    .await;
    assert!(skipped, "{:?}", billing.metrics().handlers);
    assert_eq!(charges(&w.pool, 7).await, 1);
    let inbox = "SELECT count(*) FROM eventbus_inbox \
                 WHERE consumer_group = 'billing:order_placed' AND event_id = 'order-7-placed'";
    assert_eq!(orders::count(&w.pool, inbox).await, 1);
    // Every entry was acknowledged, the skipped ones too.
    let pending = || {
        w.redis
            .cli(&["XPENDING", "events:order_placed", "billing:order_placed"])
    };
    assert!(
        wait_for(LIMIT, || pending().starts_with('0')).await,
        "{}",
        pending()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_rolls_back_its_writes_and_the_retry_commits_once() {
    let Some(w) = world().await else { return };
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let options = HandlerOptions::new().retry(
        RetryPolicy::attempts(3).backoff(Duration::from_millis(10), Duration::from_millis(10)),
    );
    let billing = EventBus::builder()
        .service("billing")
        .redis_options(fast())
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler_with(options, move |order: OrderPlaced, mut tx: Tx| {
            let r = r.clone();
            async move {
                sqlx::query("INSERT INTO charges (order_id) VALUES ($1)")
                    .bind(order.order_id)
                    .execute(&mut *tx)
                    .await?;
                match r.fetch_add(1, Ordering::SeqCst) {
                    0 => anyhow::bail!("the card network timed out"),
                    1 => panic!("a bug in the second run"),
                    _ => Ok(()),
                }
            }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    billing.ready(LIMIT).await.unwrap();
    billing
        .publish(OrderPlaced {
            order_id: 3,
            total: 1,
        })
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || billing.metrics().handlers[0].handled == 1).await);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(charges(&w.pool, 3).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_event_at_once_produce_one_effect() {
    let Some(w) = world().await else { return };
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let url = w.pg.url();
    let options = HandlerOptions::new().concurrency(2);
    let billing = EventBus::builder()
        .service("billing")
        .redis_options(fast())
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler_with(options, move |order: OrderPlaced, mut tx: Tx| {
            let (r, url) = (r.clone(), url.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                sqlx::query("INSERT INTO charges (order_id) VALUES ($1)")
                    .bind(order.order_id)
                    .execute(&mut *tx)
                    .await?;
                // Until the second run waits on this one's inbox row (or a long while).
                let pool = sqlx::PgPool::connect(&url).await?;
                let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted";
                eventbus_suite::poll_until(LIMIT, || orders::count(&pool, waiting), |n| *n > 0)
                    .await;
                anyhow::Ok(())
            }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    billing.ready(LIMIT).await.unwrap();
    let envelope = r#"{"specversion":"1.0","id":"twice","source":"orders","type":"order_placed","data":{"order_id":11,"total":1}}"#;
    append(&w.redis, envelope);
    append(&w.redis, envelope);
    let settled = wait_for(LIMIT, || {
        let h = &billing.metrics().handlers[0];
        h.handled + h.duplicates == 2
    })
    .await;
    assert!(settled, "{:?}", billing.metrics().handlers);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second waited for the first's commit"
    );
    assert_eq!(billing.metrics().handlers[0].duplicates, 1);
    assert_eq!(charges(&w.pool, 11).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_published_in_the_handlers_transaction_exists_only_if_it_commits() {
    let Some(w) = world().await else { return };
    let attempts = Arc::new(AtomicU32::new(0));
    let a = attempts.clone();
    let options = HandlerOptions::new().retry(
        RetryPolicy::attempts(2).backoff(Duration::from_millis(10), Duration::from_millis(10)),
    );
    let billing = EventBus::builder()
        .service("billing")
        .redis_options(fast())
        .outbox(Outbox::postgres(w.pool.clone()).poll_interval(Duration::from_millis(100)))
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler_with(options, move |order: OrderPlaced, mut tx: Tx| {
            let a = a.clone();
            async move {
                tx.publish(PaymentTaken {
                    order_id: order.order_id,
                })
                .await?;
                if a.fetch_add(1, Ordering::SeqCst) == 0 {
                    anyhow::bail!("failed after publishing: the follow-up must not exist");
                }
                Ok(())
            }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    let paid = eventbus_suite::Seen::new();
    let p = paid.clone();
    let shipping = EventBus::builder()
        .service("shipping")
        .redis_options(fast())
        .handler(move |e: eventbus::Envelope<PaymentTaken>| {
            let p = p.clone();
            async move { p.push((e.data().order_id, e.correlation_id().map(str::to_owned))) }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    billing.ready(LIMIT).await.unwrap();
    shipping.ready(LIMIT).await.unwrap();
    let receipt = billing
        .publish(OrderPlaced {
            order_id: 5,
            total: 1,
        })
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || paid.len() == 1).await);
    assert!(wait_for(LIMIT, || billing.metrics().outbox.unwrap().relayed == 1).await);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let (order, correlation) = paid.snapshot()[0].clone();
    assert_eq!(order, 5);
    // The follow-up carries the handled event's correlation.
    assert_eq!(correlation.as_deref(), Some(receipt.id.as_str()));
    assert_eq!(w.redis.cli(&["XLEN", "events:payment_taken"]), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_failed_inside_the_run_fails_the_run_even_when_the_handler_says_ok() {
    let Some(w) = world().await else { return };
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let options = HandlerOptions::new().retry(
        RetryPolicy::attempts(2).backoff(Duration::from_millis(10), Duration::from_millis(10)),
    );
    let billing = EventBus::builder()
        .service("billing")
        .redis_options(fast())
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler_with(options, move |order: OrderPlaced, mut tx: Tx| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Fails, and the handler looks away: PostgreSQL aborted the transaction.
                    let _ = sqlx::query("SELECT 1 / 0").execute(&mut *tx).await;
                }
                sqlx::query("INSERT INTO charges (order_id) VALUES ($1)")
                    .bind(order.order_id)
                    .execute(&mut *tx)
                    .await
                    .ok();
                anyhow::Ok(())
            }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    billing.ready(LIMIT).await.unwrap();
    billing
        .publish(OrderPlaced {
            order_id: 4,
            total: 1,
        })
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || billing.metrics().handlers[0].handled == 1).await);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the aborted run counted as failed and ran again"
    );
    assert_eq!(billing.metrics().handlers[0].retried, 1);
    assert_eq!(charges(&w.pool, 4).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_and_an_inbox_in_two_databases_or_two_handlers_in_one_scope_are_refused() {
    let Some(w) = world().await else { return };
    w.pg.psql("CREATE DATABASE elsewhere");
    let url = w.pg.url();
    let other = orders::pool(&format!("{}/elsewhere", url.rsplit_once('/').unwrap().0)).await;
    let e = EventBus::builder()
        .outbox(Outbox::postgres(w.pool.clone()))
        .inbox(Inbox::postgres(other))
        .handler(charge)
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ConnectErrorKind::Config);
    assert!(e.to_string().contains("does not hold the outbox"), "{e}");

    async fn audit(_: PaymentTaken, _: Tx) {}
    let e = EventBus::builder()
        .service("billing")
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler(audit)
        .handler(|_: PaymentTaken, _: Tx| async {})
        .connect("memory://")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("share the inbox scope `billing:payment_taken`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_rows_past_their_retention_are_purged_at_start_up() {
    let Some(w) = world().await else { return };
    let inbox = || Inbox::postgres(w.pool.clone()).retention(Duration::from_secs(3600));
    let bus = EventBus::builder()
        .inbox(inbox())
        .connect("memory://")
        .await
        .unwrap();
    bus.shutdown().await.unwrap();
    w.pg.psql(
        "INSERT INTO eventbus_inbox (consumer_group, event_id, handled_at) VALUES \
         ('billing:order_placed', 'old', now() - interval '2 hours'), \
         ('billing:order_placed', 'new', now() - interval '10 minutes')",
    );
    let _bus = EventBus::builder()
        .inbox(inbox())
        .connect("memory://")
        .await
        .unwrap();
    let left = || {
        orders::count(
            &w.pool,
            "SELECT count(*) FROM eventbus_inbox WHERE event_id = 'old'",
        )
    };
    assert_eq!(
        eventbus_suite::poll_until(LIMIT, left, |n| *n == 0).await,
        0
    );
    assert_eq!(
        orders::count(&w.pool, "SELECT count(*) FROM eventbus_inbox").await,
        1
    );
    let e = EventBus::builder()
        .inbox(Inbox::postgres(w.pool.clone()).retention(Duration::from_secs(1)))
        .connect("memory://")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("shorter than the minimum"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_taking_a_tx_needs_an_inbox() {
    let e = EventBus::builder()
        .handler(charge)
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ConnectErrorKind::Config);
    let text = e.to_string();
    assert!(text.contains("takes a Tx, which needs an inbox"), "{text}");
    assert!(text.contains(".inbox(Inbox::postgres(pool))"), "{text}");
    let bus = EventBus::builder().connect("memory://").await.unwrap();
    let e = bus
        .subscribe_with(HandlerOptions::new().durable(DurableOptions::new()), charge)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("takes a Tx, which needs an inbox"),
        "{e}"
    );
}
