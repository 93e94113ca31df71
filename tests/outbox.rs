//! The transactional outbox against a real PostgreSQL and redis-server: an event exists if and
//! only if its transaction commits, the relay drains what piled up while Redis was away, and a
//! row Redis can never take is set aside, not retried forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{EventBus, Failure, Outbox, PublishErrorKind};
use eventbus_suite::orders::{self, OrderPlaced, PriceChanged, world};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{fast, wait_for};
use sqlx::PgPool;

const LIMIT: Duration = Duration::from_secs(30);

fn quick(pool: &PgPool) -> Outbox {
    Outbox::postgres(pool.clone()).poll_interval(Duration::from_millis(100))
}

/// A bus that records every `OrderPlaced` it handles.
async fn recorder(url: &str) -> (EventBus, Arc<Mutex<Vec<i64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let bus = EventBus::builder()
        .service("audit")
        .redis_options(fast())
        .handler(move |o: OrderPlaced| {
            let s = s.clone();
            async move { s.lock().unwrap().push(o.order_id) }
        })
        .connect(url)
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    (bus, seen)
}

async fn place(bus: &EventBus, pool: &PgPool, id: i64, commit: bool) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id, total) VALUES ($1, $2)")
        .bind(id)
        .bind(100 * id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let r = bus
        .outbox()
        .publish(
            &mut tx,
            OrderPlaced {
                order_id: id,
                total: 100 * id,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.channel, "events:order_placed");
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_order_publishes_nothing_and_a_committed_one_arrives_once() {
    let Some(w) = world().await else { return };
    let (_audit, seen) = recorder(&w.redis.url()).await;
    let orders = EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .outbox(quick(&w.pool))
        .connect(&w.redis.url())
        .await
        .unwrap();
    place(&orders, &w.pool, 1, false).await;
    place(&orders, &w.pool, 2, true).await;
    place(&orders, &w.pool, 3, false).await;
    place(&orders, &w.pool, 4, true).await;
    assert!(wait_for(LIMIT, || seen.lock().unwrap().len() >= 2).await);
    // Whatever a late relay pass could add, it has had a few polls to do so.
    let empty = wait_for(LIMIT, || orders.metrics().outbox.unwrap().relayed == 2).await;
    assert!(empty, "{:?}", orders.metrics().outbox);
    assert_eq!(*seen.lock().unwrap(), vec![2, 4]);
    assert_eq!(w.redis.cli(&["XLEN", "events:order_placed"]), "2");
    let left = orders::count(&w.pool, "SELECT count(*) FROM eventbus_outbox").await;
    assert_eq!(left, 0);
    let m = orders.metrics().outbox.unwrap();
    assert!(m.active, "{m:?}");
    assert_exported(&orders);
    orders.shutdown().await.unwrap();
}

/// The outbox's metrics through the `metrics` facade: 2 rows relayed by the active relay.
fn assert_exported(bus: &EventBus) {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut exporter = eventbus::MetricsExporter::new();
    metrics::with_local_recorder(&recorder, || exporter.record(&bus.metrics()));
    let values: std::collections::HashMap<String, f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let v = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => return None,
            };
            Some((key.key().name().to_owned(), v))
        })
        .collect();
    assert_eq!(
        values.get("eventbus_outbox_relayed_total"),
        Some(&2.0),
        "{values:?}"
    );
    assert_eq!(
        values.get("eventbus_outbox_relay_active"),
        Some(&1.0),
        "{values:?}"
    );
    // Sampled once per poll interval: there, whatever the last sample held.
    assert!(values.contains_key("eventbus_outbox_depth"), "{values:?}");
    assert!(
        values.contains_key("eventbus_outbox_oldest_age_seconds"),
        "{values:?}"
    );
    assert_eq!(
        values.get("eventbus_outbox_poisoned_total"),
        Some(&0.0),
        "{values:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_all_writes_many_rows_in_one_statement_and_they_arrive_in_order() {
    let Some(w) = world().await else { return };
    let (_audit, seen) = recorder(&w.redis.url()).await;
    let orders = EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .outbox(quick(&w.pool))
        .connect(&w.redis.url())
        .await
        .unwrap();
    let batch = |ids: std::ops::Range<i64>| ids.map(|order_id| OrderPlaced { order_id, total: 1 });
    let mut tx = w.pool.begin().await.unwrap();
    let receipts = orders
        .outbox()
        .publish_all(&mut tx, batch(1..101))
        .await
        .unwrap();
    assert_eq!(receipts.len(), 100);
    tx.rollback().await.unwrap();
    let mut tx = w.pool.begin().await.unwrap();
    orders
        .outbox()
        .publish_all(&mut tx, batch(101..301))
        .await
        .unwrap();
    assert!(
        orders
            .outbox()
            .publish_all(&mut tx, batch(0..0))
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
    assert!(wait_for(LIMIT, || seen.lock().unwrap().len() == 200).await);
    assert!(wait_for(LIMIT, || orders.metrics().outbox.unwrap().relayed == 200).await);
    assert_eq!(*seen.lock().unwrap(), (101..301).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_envelope_is_fixed_at_insert_and_pubsub_types_go_through_too() {
    let Some(w) = world().await else { return };
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let shop = EventBus::builder()
        .service("shop")
        .redis_options(fast())
        .handler(move |e: eventbus::Envelope<PriceChanged>| {
            let h = h.clone();
            async move { h.lock().unwrap().push((e.id().to_owned(), e.data().sku)) }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    shop.ready(LIMIT).await.unwrap();
    let catalog = EventBus::builder()
        .service("catalog")
        .redis_options(fast())
        .outbox(quick(&w.pool))
        .connect(&w.redis.url())
        .await
        .unwrap();
    let mut tx = w.pool.begin().await.unwrap();
    let receipt = catalog
        .outbox()
        .publish(&mut tx, PriceChanged { sku: 9 })
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT envelope FROM eventbus_outbox")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["id"], receipt.id.as_str());
    assert_eq!(stored["source"], "catalog");
    assert_eq!(stored["type"], "price_changed");
    assert!(wait_for(LIMIT, || !heard.lock().unwrap().is_empty()).await);
    assert_eq!(*heard.lock().unwrap(), vec![(receipt.id.clone(), 9)]);
}

/// How long Redis stays away under load: 10 s in the suite; `EVENTBUS_OUTAGE_SECS=30 cargo test
/// --test outbox what_piles_up` for the longer run.
fn outage() -> Duration {
    let secs = std::env::var("EVENTBUS_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_piles_up_while_redis_is_away_under_load_drains_when_it_is_back() {
    let Some(mut w) = world().await else { return };
    let outage_for = outage();
    // Redis keeps what it took across the restart (AOF, fsync on every write).
    w.redis = RedisServer::builder()
        .args(&["--appendonly", "yes", "--appendfsync", "always"])
        .start();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let f = failures.clone();
    let orders = EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .outbox(quick(&w.pool))
        .on_error(move |e| f.lock().unwrap().push(e.to_string()))
        .connect(&w.redis.url())
        .await
        .unwrap();
    // Orders keep coming, one every 10 ms, before, during and after the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let placing = tokio::spawn({
        let (orders, pool, stop) = (orders.clone(), w.pool.clone(), stop.clone());
        async move {
            let mut id = 0;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                place(&orders, &pool, id, true).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    assert!(wait_for(LIMIT, || orders.metrics().outbox.unwrap().relayed >= 100).await);
    w.redis.kill();
    let outage = std::time::Instant::now();
    let piled = wait_for(LIMIT, || orders.metrics().outbox.unwrap().depth >= 200).await;
    assert!(piled, "{:?}", orders.metrics().outbox);
    assert!(wait_for(LIMIT, || !failures.lock().unwrap().is_empty()).await);
    let first = failures.lock().unwrap()[0].clone();
    assert!(first.contains("outbox relay failed"), "{first}");
    assert!(wait_for(outage_for * 2, || outage.elapsed() >= outage_for).await);
    w.redis.restart();
    // Orders still come in while the backlog drains.
    let placed_then = orders::count(&w.pool, "SELECT count(*) FROM orders").await;
    let caught_up = wait_for(LIMIT, || {
        orders.metrics().outbox.unwrap().relayed >= placed_then as u64 + 100
    })
    .await;
    assert!(caught_up, "{:?}", orders.metrics().outbox);
    stop.store(true, Ordering::SeqCst);
    placing.await.unwrap();
    let placed = orders::count(&w.pool, "SELECT count(*) FROM orders").await;
    let drained = wait_for(LIMIT, || {
        orders.metrics().outbox.unwrap().relayed == placed as u64
    });
    assert!(drained.await, "{:?}", orders.metrics().outbox);
    // Every order is in the stream, in order. A pipeline cut by the kill may have been stored
    // in part and sent again whole (at least once): duplicates are counted, not refused.
    let ids = w.redis.cli(&["XRANGE", "events:order_placed", "-", "+"]);
    let order: Vec<i64> = ids
        .lines()
        .filter_map(|l| l.split("\"order_id\":").nth(1))
        .map(|t| t.split([',', '}']).next().unwrap().parse().unwrap())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let first: Vec<i64> = order
        .iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .collect();
    let expected: Vec<i64> = (1..=placed).collect();
    let wrong = first.iter().zip(&expected).position(|(a, b)| a != b);
    let around = |at: usize| order[at.saturating_sub(5)..(at + 5).min(order.len())].to_vec();
    assert_eq!(
        (first.len(), wrong),
        (expected.len(), None),
        "first occurrences ≠ 1..={placed}; {} entries; around the first wrong one: {:?}",
        order.len(),
        wrong.map(around)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transaction_is_published_when_it_commits_and_short_ones_keep_their_order() {
    let Some(w) = world().await else { return };
    let orders = EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .outbox(quick(&w.pool))
        .connect(&w.redis.url())
        .await
        .unwrap();
    // The long one takes its sequence number first and commits after the short ones began.
    let mut long = w.pool.begin().await.unwrap();
    orders
        .outbox()
        .publish(
            &mut long,
            OrderPlaced {
                order_id: 0,
                total: 0,
            },
        )
        .await
        .unwrap();
    // Four producers, 2 500 short transactions each, ids `producer * 10 000 + n`.
    let mut producers = Vec::new();
    for p in 1..=4_i64 {
        let (orders, pool) = (orders.clone(), w.pool.clone());
        producers.push(tokio::spawn(async move {
            for n in 1..=2_500 {
                let mut tx = pool.begin().await.unwrap();
                let order = OrderPlaced {
                    order_id: p * 10_000 + n,
                    total: 1,
                };
                orders.outbox().publish(&mut tx, order).await.unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    // The short ones are relayed while the long one is open.
    assert!(wait_for(LIMIT, || orders.metrics().outbox.unwrap().relayed >= 1_000).await);
    long.commit().await.unwrap();
    for p in producers {
        p.await.unwrap();
    }
    assert!(wait_for(LIMIT, || orders.metrics().outbox.unwrap().relayed == 10_001).await);
    let ids = w.redis.cli(&["XRANGE", "events:order_placed", "-", "+"]);
    let stream: Vec<i64> = ids
        .lines()
        .filter_map(|l| l.split("\"order_id\":").nth(1))
        .map(|t| t.split([',', '}']).next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(stream.len(), 10_001);
    let long_at = stream
        .iter()
        .position(|id| *id == 0)
        .expect("the long one was published");
    assert!(
        long_at >= 1_000,
        "published where it committed, not where it began: {long_at}"
    );
    for p in 1..=4 {
        let mine: Vec<i64> = stream
            .iter()
            .copied()
            .filter(|id| id / 10_000 == p)
            .collect();
        let expected: Vec<i64> = (1..=2_500).map(|n| p * 10_000 + n).collect();
        assert_eq!(mine, expected, "producer {p}'s events in its commit order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_redis_can_never_take_is_moved_aside_and_the_next_one_goes_through() {
    let Some(w) = world().await else { return };
    let failures = Arc::new(Mutex::new(Vec::new()));
    let f = failures.clone();
    let (_audit, seen) = recorder(&w.redis.url()).await;
    let orders = EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .max_message_size(4096)
        .outbox(quick(&w.pool))
        .on_error(move |e| {
            if let Failure::OutboxPoison { reason, .. } = e {
                f.lock().unwrap().push(reason.clone());
            }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    // A row another writer made: too large for this bus, and one for a key that is a string.
    w.redis.cli(&["SET", "events:not_a_stream", "x"]);
    let big = format!("{{\"id\":\"big\",\"data\":\"{}\"}}", "x".repeat(5000));
    sqlx::query(
        "INSERT INTO eventbus_outbox (event_id, event_type, key, delivery, envelope) VALUES \
         ('big', 'order_placed', 'events:order_placed', 'stream', $1), \
         ('odd', 'order_placed', 'events:not_a_stream', 'stream', '{\"id\":\"odd\"}')",
    )
    .bind(&big)
    .execute(&w.pool)
    .await
    .unwrap();
    place(&orders, &w.pool, 5, true).await;
    assert!(wait_for(LIMIT, || !seen.lock().unwrap().is_empty()).await);
    assert!(wait_for(LIMIT, || failures.lock().unwrap().len() == 2).await);
    let reasons = failures.lock().unwrap().clone();
    assert!(
        reasons[0].contains("exceeds the maximum of 4096"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("WRONGTYPE"), "{reasons:?}");
    let aside = orders::count(&w.pool, "SELECT count(*) FROM eventbus_outbox_poison").await;
    assert_eq!(aside, 2);
    assert_eq!(orders.metrics().outbox.unwrap().poisoned, 2);
    assert_eq!(
        orders::count(&w.pool, "SELECT count(*) FROM eventbus_outbox").await,
        0
    );
    // Order 5 shared a refused pipeline with the bad key: sent again row by row, it may have
    // arrived twice (at least once), and nothing else did.
    assert!(seen.lock().unwrap().iter().all(|id| *id == 5), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_without_a_relay_shows_its_outbox_stalled_when_nobody_relays() {
    let Some(w) = world().await else { return };
    let outbox = quick(&w.pool)
        .relay(false)
        .stalled_after(Duration::from_secs(1));
    let orders = EventBus::builder()
        .outbox(outbox)
        .connect("memory://")
        .await
        .unwrap();
    assert!(orders.health().is_up());
    place(&orders, &w.pool, 1, true).await;
    let stalled = wait_for(LIMIT, || !orders.health().is_up()).await;
    assert!(stalled, "{:?}", orders.health());
    let seen = orders.health().outbox.unwrap();
    assert!(seen.stalled && seen.depth == 1 && !seen.active, "{seen:?}");
    assert_eq!(seen.holder, None);
    // A relay elsewhere drains it, and the bus is healthy again.
    let _relay = EventBus::builder()
        .outbox(quick(&w.pool))
        .connect("memory://")
        .await
        .unwrap();
    assert!(
        wait_for(LIMIT, || orders.health().is_up()).await,
        "{:?}",
        orders.health()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_in_a_schema_of_its_own_relays_and_reports_its_status() {
    let Some(w) = world().await else { return };
    w.pg.psql("CREATE SCHEMA shop");
    let outbox = || quick(&w.pool).schema("shop").table_prefix("bus_");
    let (_audit, seen) = recorder(&w.redis.url()).await;
    let orders = EventBus::builder()
        .outbox(outbox())
        .connect(&w.redis.url())
        .await
        .unwrap();
    let mut tx = w.pool.begin().await.unwrap();
    orders
        .outbox()
        .publish(
            &mut tx,
            OrderPlaced {
                order_id: 9,
                total: 1,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(wait_for(LIMIT, || seen.lock().unwrap().len() == 1).await);
    let versions =
        w.pg.psql("SELECT max(version) FROM shop.bus_schema_version");
    assert_eq!(versions, "2", "both migrations applied");
    let status = outbox().status().await.unwrap();
    assert_eq!(status.depth, 0);
    assert!(status.holder.is_some(), "{status:?}");
    let e = quick(&w.pool)
        .table_prefix("nothing_here_")
        .status()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing_here_outbox"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_into_the_outbox_fails_clearly_when_the_database_refuses() {
    let Some(w) = world().await else { return };
    let orders = EventBus::builder()
        .service("orders")
        .outbox(quick(&w.pool))
        .connect("memory://")
        .await
        .unwrap();
    w.pg.psql("CREATE ROLE clerk LOGIN; GRANT SELECT ON eventbus_schema_version TO clerk");
    let clerk_url = w.pg.url().replace("postgres@", "clerk@");
    let clerk = orders::pool(&clerk_url).await;
    let mut tx = clerk.begin().await.unwrap();
    let e = orders
        .outbox()
        .publish(
            &mut tx,
            OrderPlaced {
                order_id: 1,
                total: 1,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::Database);
    let text = e.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("GRANT INSERT ON eventbus_outbox"), "{text}");

    let no_outbox = EventBus::builder().connect("memory://").await.unwrap();
    let mut tx = w.pool.begin().await.unwrap();
    let e = no_outbox
        .outbox()
        .publish(
            &mut tx,
            OrderPlaced {
                order_id: 1,
                total: 1,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), PublishErrorKind::Config);
    assert!(
        e.to_string().contains(".outbox(Outbox::postgres(pool))"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_and_a_role_that_may_not_create_tables_are_refused_at_connect() {
    let Some(w) = world().await else { return };
    let e = EventBus::builder()
        .outbox(Outbox::postgres(w.pool.clone()).table_prefix("Bad-Prefix"))
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), eventbus::ConnectErrorKind::Config);
    assert!(
        e.to_string()
            .contains("`Bad-Prefix` is not a plain PostgreSQL identifier"),
        "{e}"
    );
    let e = EventBus::builder()
        .outbox(Outbox::postgres(w.pool.clone()).batch_size(0))
        .connect("memory://")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("batch_size of 0 is out of range"),
        "{e}"
    );

    w.pg.psql("CREATE ROLE reader LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    let reader = orders::pool(&w.pg.url().replace("postgres@", "reader@")).await;
    let e = EventBus::builder()
        .outbox(Outbox::postgres(reader.clone()).table_prefix("fresh_"))
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), eventbus::ConnectErrorKind::Database);
    assert!(
        e.to_string()
            .contains("permission denied for schema public"),
        "{e}"
    );
    assert!(
        e.to_string().contains("GRANT CREATE ON SCHEMA public"),
        "{e}"
    );
    let e = EventBus::builder()
        .outbox(
            Outbox::postgres(reader)
                .table_prefix("fresh_")
                .create_tables(false),
        )
        .connect("memory://")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("schema_sql()"), "{e}");
}

/// An event published for later through the outbox exists only if its transaction commits,
/// and reaches its handler when due, not before: the relay hands it to Redis's schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_for_later_through_the_outbox_comes_when_due_if_committed() {
    let Some(w) = world().await else { return };
    let url = w.redis.url();
    let (audit, seen) = recorder(&url).await;
    let orders = EventBus::builder()
        .service("orders")
        .redis_options(fast())
        .outbox(quick(&w.pool))
        .connect(&url)
        .await
        .unwrap();
    let later = Duration::from_millis(800);
    let started = std::time::Instant::now();
    for (id, commit) in [(1, true), (2, false)] {
        let mut tx = w.pool.begin().await.unwrap();
        let order = OrderPlaced {
            order_id: id,
            total: 1,
        };
        let r = orders.outbox().publish_after(&mut tx, order, later).await;
        assert_eq!(r.unwrap().channel, "events:order_placed");
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    // Handed to the schedule by the relay: the row leaves the outbox and waits in Redis.
    let queued = || {
        w.redis
            .cli(&["ZCARD", "eventbus:schedule:{events:order_placed}"])
            == "1"
    };
    assert!(
        wait_for(LIMIT, queued).await,
        "the relay did not schedule the row"
    );
    assert!(wait_for(LIMIT, || !seen.lock().unwrap().is_empty()).await);
    let arrived = started.elapsed();
    assert!(
        arrived >= later,
        "it arrived after {arrived:?}, before its {later:?}"
    );
    // A marker published at once afterwards shows nothing else is on its way.
    let mut tx = w.pool.begin().await.unwrap();
    let marker = OrderPlaced {
        order_id: 3,
        total: 1,
    };
    orders.outbox().publish(&mut tx, marker).await.unwrap();
    tx.commit().await.unwrap();
    assert!(wait_for(LIMIT, || seen.lock().unwrap().len() == 2).await);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 3],
        "the rolled-back one never comes"
    );
    // The relay deletes a batch's rows once Redis took them: the marker may be handled first.
    let outbox_rows = || orders::count(&w.pool, "SELECT count(*) FROM eventbus_outbox");
    let rows = eventbus_suite::poll_until(LIMIT, outbox_rows, |n| *n == 0).await;
    assert_eq!(rows, 0, "rows left in the outbox");
    orders.shutdown().await.unwrap();
    audit.shutdown().await.unwrap();
}
