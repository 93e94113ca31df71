//! The outbox and inbox under faults, with real processes: publishers and relays killed with
//! `kill -9` at any point, relays taking over from one another, PostgreSQL killed under load,
//! and a consumer stopped (`SIGSTOP`) in the middle of its transaction. Every check counts rows:
//! every committed order is charged exactly once, and no event exists for an order that does
//! not.

mod outbox_services;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eventbus::{EventBus, Inbox, Outbox, Tx};
use eventbus_suite::orders::{self, OrderPlaced, World, world};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{fast, wait_for};
use outbox_services::Service;
use sqlx::PgPool;

const LIMIT: Duration = Duration::from_secs(60);

/// Not a test: the service process the tests start (see `outbox_services`).
#[tokio::test]
async fn service_process() {
    outbox_services::run_if_asked().await;
}

async fn charge(order: OrderPlaced, mut tx: Tx) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO charges (order_id, consumer) VALUES ($1, 'test')")
        .bind(order.order_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Billing in the test process: charges each order once, through the inbox.
async fn billing(w: &World) -> EventBus {
    let bus = EventBus::builder()
        .service("billing")
        .redis_options(fast())
        .inbox(Inbox::postgres(w.pool.clone()))
        .handler(charge)
        .connect(&w.redis.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    bus
}

/// A relay in the test process.
async fn relay(w: &World) -> EventBus {
    let outbox = Outbox::postgres(w.pool.clone()).poll_interval(Duration::from_millis(100));
    EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .outbox(outbox)
        .connect(&w.redis.url())
        .await
        .unwrap()
}

/// Waits until every order is charged and the outbox is empty, then checks exactly once:
/// every order has one charge, and no charge or event exists without its order.
async fn assert_each_order_charged_once(w: &World) {
    let pool = &w.pool;
    let all_charged = eventbus_suite::poll_until(
        LIMIT,
        || async {
            let uncharged = orders::count(
                pool,
                "SELECT count(*) FROM orders o WHERE NOT EXISTS \
                 (SELECT 1 FROM charges c WHERE c.order_id = o.id)",
            )
            .await;
            let waiting = orders::count(pool, "SELECT count(*) FROM eventbus_outbox").await;
            (uncharged, waiting)
        },
        |counts| *counts == (0, 0),
    )
    .await;
    assert_eq!(
        all_charged,
        (0, 0),
        "(orders not charged, rows in the outbox)"
    );
    let twice = orders::count(
        pool,
        "SELECT count(*) FROM (SELECT order_id FROM charges GROUP BY order_id \
         HAVING count(*) > 1) AS t",
    )
    .await;
    assert_eq!(twice, 0, "orders charged more than once");
    let orphans = orders::count(
        pool,
        "SELECT count(*) FROM charges c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = c.order_id)",
    )
    .await;
    assert_eq!(orphans, 0, "charges of orders that do not exist");
    let placed: BTreeSet<i64> = sqlx::query_scalar("SELECT id FROM orders")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let published = stream_orders(&w.redis);
    let unknown: Vec<&i64> = published.iter().filter(|id| !placed.contains(id)).collect();
    assert!(
        unknown.is_empty(),
        "events of orders that do not exist: {unknown:?}"
    );
}

/// The order ids of every entry of the order stream, in stream order.
fn stream_orders(redis: &RedisServer) -> Vec<i64> {
    redis
        .cli(&["XRANGE", "events:order_placed", "-", "+"])
        .lines()
        .filter_map(|l| l.split("\"order_id\":").nth(1))
        .map(|t| t.split([',', '}']).next().unwrap().parse().unwrap())
        .collect()
}

async fn next_order(pool: &PgPool) -> i64 {
    orders::count(pool, "SELECT coalesce(max(id), 0) + 1 FROM orders").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_killed_at_random_points_lose_no_committed_order_and_invent_none() {
    let Some(w) = world().await else { return };
    let _billing = billing(&w).await;
    let mut committed = Vec::new();
    let mut rounds = 0;
    while orders::count(&w.pool, "SELECT count(*) FROM orders").await < 1000 {
        let first = next_order(&w.pool).await;
        let role = format!("orders {first}");
        let service = outbox_services::start(&role, &w.pg.url(), &w.redis.url()).await;
        // Killed after a random number of commits, at whatever point it then is.
        let after = fastrand::usize(20..150);
        assert!(wait_for(LIMIT, || service.printed("committed") >= after).await);
        committed.extend(service.numbers("committed "));
        service.kill().await;
        rounds += 1;
    }
    assert!(rounds >= 6, "{rounds} rounds");
    // Whatever the killed relays left in the outbox, a live one takes out.
    let _relay = relay(&w).await;
    assert_each_order_charged_once(&w).await;
    let placed = orders::count(&w.pool, "SELECT count(*) FROM orders").await;
    for id in committed {
        let sql = format!("SELECT count(*) FROM orders WHERE id = {id}");
        assert_eq!(
            orders::count(&w.pool, &sql).await,
            1,
            "committed order {id} is missing"
        );
    }
    assert!(placed >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_after_redis_took_its_rows_republishes_them_and_the_inbox_skips_them() {
    let Some(w) = world().await else { return };
    let billing = billing(&w).await;
    // Rows first, with no relay running anywhere.
    let placing = EventBus::builder()
        .outbox(Outbox::postgres(w.pool.clone()).relay(false))
        .connect("memory://")
        .await
        .unwrap();
    for id in 1..=50 {
        let mut tx = w.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO orders (id, total) VALUES ($1, 1)")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        placing
            .outbox()
            .publish(
                &mut tx,
                OrderPlaced {
                    order_id: id,
                    total: 1,
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // The relay's deletes wait behind this lock: Redis takes the rows, PostgreSQL keeps them.
    let mut blocker = w.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE eventbus_outbox IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let relay_process = outbox_services::start("relay", &w.pg.url(), &w.redis.url()).await;
    assert!(wait_for(LIMIT, || stream_orders(&w.redis).len() == 50).await);
    relay_process.kill().await;
    blocker.rollback().await.unwrap();
    let _relay = relay(&w).await;
    assert!(wait_for(LIMIT, || stream_orders(&w.redis).len() == 100).await);
    assert_each_order_charged_once(&w).await;
    let skipped = wait_for(LIMIT, || billing.metrics().handlers[0].duplicates == 50).await;
    assert!(skipped, "{:?}", billing.metrics().handlers[0]);
    assert_eq!(
        orders::count(&w.pool, "SELECT count(*) FROM charges").await,
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_of_three_is_active_and_another_takes_over_when_it_dies() {
    let Some(w) = world().await else { return };
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(outbox_services::start("relay", &w.pg.url(), &w.redis.url()).await);
    }
    let active = |relays: &[Service]| relays.iter().filter(|r| r.printed("active") > 0).count();
    assert!(wait_for(LIMIT, || active(&relays) == 1).await);
    let locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted";
    assert_eq!(orders::count(&w.pool, locks).await, 1);
    // A steady stream of orders from this process while the active relay dies.
    let pool = w.pool.clone();
    let producer = tokio::spawn(async move {
        let bus = EventBus::builder()
            .outbox(Outbox::postgres(pool.clone()).relay(false))
            .connect("memory://")
            .await
            .unwrap();
        for id in 1..=400_i64 {
            let mut tx = pool.begin().await.unwrap();
            bus.outbox()
                .publish(
                    &mut tx,
                    OrderPlaced {
                        order_id: id,
                        total: 1,
                    },
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert!(wait_for(LIMIT, || stream_orders(&w.redis).len() >= 100).await);
    let leader = relays.iter().position(|r| r.printed("active") > 0).unwrap();
    let dead = relays.remove(leader);
    let killed = Instant::now();
    dead.kill().await;
    assert!(wait_for(LIMIT, || active(&relays) == 1).await);
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(3),
        "took over after {takeover:?}"
    );
    producer.await.unwrap();
    // Nothing lost, nothing reordered: the first time each order appears, they are in order
    // (a row the dead relay published but did not remove comes again, later).
    let all = || {
        stream_orders(&w.redis)
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == 400
    };
    assert!(wait_for(LIMIT, all).await);
    let mut first_seen = Vec::new();
    let mut seen = BTreeSet::new();
    for id in stream_orders(&w.redis) {
        if seen.insert(id) {
            first_seen.push(id);
        }
    }
    assert_eq!(first_seen, (1..=400).collect::<Vec<_>>());
    eprintln!("takeover after {takeover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_under_load_fails_publishes_clearly_and_loses_nothing_after() {
    let Some(w) = world().await else { return };
    let _billing = billing(&w).await;
    let first = next_order(&w.pool).await;
    let service =
        outbox_services::start(&format!("orders {first}"), &w.pg.url(), &w.redis.url()).await;
    assert!(wait_for(LIMIT, || service.printed("committed") >= 100).await);
    w.pg.kill();
    assert!(wait_for(LIMIT, || service.printed("error") >= 3).await);
    let errors: Vec<String> = service
        .lines
        .snapshot()
        .into_iter()
        .filter(|l| l.starts_with("error"))
        .collect();
    w.pg.restart();
    let before = service.printed("committed");
    assert!(wait_for(LIMIT, || service.printed("committed") >= before + 100).await);
    let committed = service.numbers("committed ");
    service.stop().await;
    // The stopped service ran the relay: what it left is relayed from here.
    let _relay = relay(&w).await;
    assert_each_order_charged_once(&w).await;
    for id in committed {
        let sql = format!("SELECT count(*) FROM charges WHERE order_id = {id}");
        assert_eq!(
            orders::count(&w.pool, &sql).await,
            1,
            "committed order {id}"
        );
    }
    // Each error says what failed: the outbox's insert in the database's own words
    // (SQLSTATE) or the connection's, or the service's own statements in sqlx's.
    for e in &errors {
        let outbox = e.contains("could not insert into `eventbus_outbox`")
            && (e.contains("SQLSTATE") || e.contains("connection"));
        let own = [
            "pool timed out",
            "error communicating",
            "connection",
            "SQLSTATE",
        ]
        .iter()
        .any(|what| e.contains(what));
        assert!(outbox || own, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_inside_its_transaction_and_the_one_that_claims_its_entry_charge_once() {
    let Some(w) = world().await else { return };
    // A slow consumer: each charge holds its transaction for 2 s; entries idle 1 s are claimed.
    let slow = outbox_services::start("billing 1000 2000", &w.pg.url(), &w.redis.url()).await;
    let bus = relay(&w).await;
    let mut tx = w.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id, total) VALUES (1, 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    bus.outbox()
        .publish(
            &mut tx,
            OrderPlaced {
                order_id: 1,
                total: 1,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(wait_for(LIMIT, || slow.printed("charging 1") == 1).await);
    // Stopped with its inbox row written and not committed.
    slow.signal("-STOP");
    let fast_one = outbox_services::start("billing 1000 0", &w.pg.url(), &w.redis.url()).await;
    // The second claims the entry; its inbox insert waits on the first's row.
    let waiting = eventbus_suite::poll_until(
        LIMIT,
        || orders::count(&w.pool, "SELECT count(*) FROM pg_locks WHERE NOT granted"),
        |n| *n > 0,
    )
    .await;
    assert_eq!(waiting, 1, "the second run waits on the first's inbox row");
    assert_eq!(
        orders::count(&w.pool, "SELECT count(*) FROM charges").await,
        0
    );
    slow.signal("-CONT");
    assert_each_order_charged_once(&w).await;
    assert_eq!(
        orders::count(&w.pool, "SELECT count(*) FROM charges").await,
        1
    );
    assert_eq!(
        fast_one.printed("charging"),
        0,
        "the second never ran: the inbox said done"
    );
    slow.stop().await;
    fast_one.stop().await;
}
