//! The outbox and inbox rows, on a throwaway PostgreSQL beside the bench's redis-server:
//!
//! - outbox publish: a transaction of 1 (and of 100) order rows with their events through the
//!   outbox, against the same transaction without the outbox rows (baseline P);
//! - relay: rows already committed, relayed to a stream, against `publish_all` of as many
//!   durable events (baseline Q);
//! - publish to handler: from an order's event written into the outbox (its transaction's
//!   commit included) to its handler, at 1 000 orders a second;
//! - inbox: a durable handler writing one row in its `Tx`, against the same handler writing
//!   the row on its own (baseline H).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventbus::{DurableOptions, Event, EventBus, HandlerOptions, Inbox, Outbox, StartFrom, Tx};
use eventbus_suite::postgres::Postgres;
use eventbus_suite::redis_server::RedisServer;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::now_ns;
use crate::progress;
use crate::table::{Row, pct, quantile, rate_text, row, us};

/// The event of these rows: an order, with the committing process's clock.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench_order", durable)]
struct BenchOrder {
    seq: u64,
    sent_ns: u64,
}

/// How many of each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxSizes {
    pub(crate) transactions: u64,
    pub(crate) relay: u64,
    pub(crate) steady_secs: u64,
    pub(crate) inbox: u64,
}

/// The rows; none (with a note) when PostgreSQL is not installed.
pub(crate) async fn rows(server: &RedisServer, sizes: &OutboxSizes) -> anyhow::Result<Vec<Row>> {
    let Some(pg) = Postgres::start_or_skip() else {
        eprintln!("  PostgreSQL is not installed: no outbox rows");
        return Ok(Vec::new());
    };
    let pool = eventbus_suite::orders::pool(&pg.url()).await;
    sqlx::raw_sql(
        "CREATE TABLE orders (seq bigint PRIMARY KEY, note text NOT NULL);
         CREATE TABLE charges (seq bigint NOT NULL);",
    )
    .execute(&pool)
    .await?;
    let url = server.url();
    let mut rows = Vec::new();
    rows.extend(publish_rows(&pool, &url, sizes.transactions).await?);
    rows.push(relay_row(&pool, &url, sizes.relay).await?);
    rows.push(latency_row(&pool, &url, sizes.steady_secs).await?);
    rows.push(inbox_row(&pool, &url, sizes.inbox).await?);
    Ok(rows)
}

/// Transactions of `per_tx` order rows, with their events through the outbox when `bus` is
/// given (one `publish` for one, `publish_all` for more); returns transactions per second.
async fn transactions(
    pool: &PgPool,
    bus: Option<&EventBus>,
    first: u64,
    n: u64,
    per_tx: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for t in 0..n {
        let mut tx = pool.begin().await?;
        let seqs = (first + t * per_tx)..(first + (t + 1) * per_tx);
        for seq in seqs.clone() {
            sqlx::query("INSERT INTO orders (seq, note) VALUES ($1, 'bench')")
                .bind(seq as i64)
                .execute(&mut *tx)
                .await?;
        }
        let orders = seqs.map(|seq| BenchOrder { seq, sent_ns: 0 });
        match bus {
            Some(bus) if per_tx == 1 => {
                for order in orders {
                    bus.outbox().publish(&mut tx, order).await?;
                }
            }
            Some(bus) => drop(bus.outbox().publish_all(&mut tx, orders).await?),
            None => {}
        }
        tx.commit().await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn publish_rows(pool: &PgPool, url: &str, n: u64) -> anyhow::Result<Vec<Row>> {
    let bus = EventBus::builder()
        .outbox(Outbox::postgres(pool.clone()).relay(false))
        .connect(url)
        .await?;
    let mut rows = Vec::new();
    let mut next = 0;
    for per_tx in [1, 100] {
        let n = if per_tx == 1 { n } else { (n / 50).max(10) };
        progress::stage(format!(
            "outbox: {n} transactions of {per_tx}, with and without"
        ));
        // Interleaved, twice each, the better of each kept.
        let (mut plain, mut ours) = (0f64, 0f64);
        for _ in 0..2 {
            plain = plain.max(transactions(pool, None, next, n, per_tx).await?);
            next += n * per_tx;
            ours = ours.max(transactions(pool, Some(&bus), next, n, per_tx).await?);
            next += n * per_tx;
        }
        let added = plain / ours - 1.0;
        let mut r = row(
            match per_tx {
                1 => "outbox publish, transaction of 1".to_owned(),
                _ => format!("outbox publish_all, transaction of {per_tx}"),
            },
            format!("P the same INSERTs and COMMIT: {}", rate_text(plain)),
            rate_text(ours),
        )
        .ratio(format!("+{} time", pct(added)));
        if per_tx == 1 {
            r = r.target("≤ +30% time", added <= 0.30);
        }
        rows.push(r);
    }
    sqlx::query("TRUNCATE eventbus_outbox")
        .execute(pool)
        .await?;
    let _ = bus.shutdown().await;
    Ok(rows)
}

async fn relay_row(pool: &PgPool, url: &str, n: u64) -> anyhow::Result<Row> {
    progress::stage(format!("baseline Q: publish_all of {n} durable events"));
    let bus = EventBus::builder().connect(url).await?;
    let started = Instant::now();
    let mut seq = 0;
    while seq < n {
        let end = (seq + 1000).min(n);
        let batch = (seq..end).map(|seq| BenchOrder { seq, sent_ns: 0 });
        bus.publish_all(batch).await?;
        seq = end;
    }
    let q = n as f64 / started.elapsed().as_secs_f64();
    progress::stage(format!("outbox: {n} committed rows, then the relay"));
    let writer = EventBus::builder()
        .outbox(Outbox::postgres(pool.clone()).relay(false))
        .connect(url)
        .await?;
    let mut tx = pool.begin().await?;
    for seq in 0..n {
        let order = BenchOrder { seq, sent_ns: 0 };
        writer.outbox().publish(&mut tx, order).await?;
    }
    tx.commit().await?;
    let started = Instant::now();
    let relay = EventBus::builder()
        .outbox(Outbox::postgres(pool.clone()))
        .connect(url)
        .await?;
    let deadline = started + Duration::from_secs(300);
    while relay.metrics().outbox.is_none_or(|o| o.relayed < n) {
        if Instant::now() > deadline {
            bail!("the relay did not relay {n} rows");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ours = n as f64 / started.elapsed().as_secs_f64();
    let _ = (
        relay.shutdown().await,
        writer.shutdown().await,
        bus.shutdown().await,
    );
    Ok(row(
        "outbox relay, committed rows to a stream",
        format!("Q publish_all, 1000 a call: {}", rate_text(q)),
        rate_text(ours),
    )
    .ratio(pct(ours / q))
    .target("≥ 50% of Q", ours >= 0.5 * q))
}

/// The handler of the latency row: the time from the commit's clock to now.
async fn record(order: BenchOrder, eventbus::State(sink): eventbus::State<Arc<Sink>>) {
    let latency = now_ns().saturating_sub(order.sent_ns);
    sink.latencies.lock().unwrap().push(latency);
    sink.count.fetch_add(1, Ordering::Release);
}

#[derive(Default)]
struct Sink {
    count: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
}

async fn latency_row(pool: &PgPool, url: &str, secs: u64) -> anyhow::Result<Row> {
    const RATE: u64 = 1_000;
    progress::stage(format!(
        "outbox: commit to handler at {RATE}/s for {secs} s"
    ));
    let sink = Arc::new(Sink::default());
    let options = HandlerOptions::new().durable(
        DurableOptions::new()
            .start_from(StartFrom::New)
            .group("latency"),
    );
    let consumer = EventBus::builder()
        .state(sink.clone())
        .handler_with(options, record)
        .connect(url)
        .await?;
    consumer.ready(Duration::from_secs(10)).await?;
    let orders = EventBus::builder()
        .outbox(Outbox::postgres(pool.clone()))
        .connect(url)
        .await?;
    let n = RATE * secs;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for seq in 0..n {
        tick.tick().await;
        let mut tx = pool.begin().await?;
        let order = BenchOrder {
            seq,
            sent_ns: now_ns(),
        };
        orders.outbox().publish(&mut tx, order).await?;
        tx.commit().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.count.load(Ordering::Acquire) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = (orders.shutdown().await, consumer.shutdown().await);
    let mut v = std::mem::take(&mut *sink.latencies.lock().unwrap());
    v.sort_unstable();
    let (p50, p99) = (quantile(&v, 0.5), quantile(&v, 0.99));
    Ok(row(
        format!("outbox publish + commit to handler, {RATE}/s"),
        "-",
        format!("p50 {} / p99 {} ({} of {n})", us(p50), us(p99), v.len()),
    )
    .target("p99 < 20 ms", p99 < 20e6 && v.len() as u64 == n))
}

async fn inbox_row(pool: &PgPool, url: &str, n: u64) -> anyhow::Result<Row> {
    progress::stage(format!("inbox: {n} entries, with and without"));
    let bus = EventBus::builder().connect(url).await?;
    let mut seq = 0;
    while seq < n {
        let end = (seq + 1000).min(n);
        bus.publish_all((seq..end).map(|seq| BenchOrder { seq, sent_ns: 0 }))
            .await?;
        seq = end;
    }
    let _ = bus.shutdown().await;
    let plain = consume(pool, url, n, false).await?;
    let ours = consume(pool, url, n, true).await?;
    Ok(row(
        "inbox handler, one row written per event",
        format!("H the same write without the inbox: {}", rate_text(plain)),
        rate_text(ours),
    )
    .ratio(pct(ours / plain)))
}

/// Reads the `n` entries from the stream's start in a fresh group, writing a row for each
/// (in a `Tx` when `inbox`); returns entries per second.
async fn consume(pool: &PgPool, url: &str, n: u64, inbox: bool) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let group = if inbox { "with-inbox" } else { "without" };
    let options = HandlerOptions::new().durable(
        DurableOptions::new()
            .start_from(StartFrom::Beginning)
            .group(group),
    );
    let (d, p) = (done.clone(), pool.clone());
    let builder = if inbox {
        EventBus::builder()
            .inbox(Inbox::postgres(pool.clone()))
            .handler_with(options, move |o: BenchOrder, mut tx: Tx| {
                let d = d.clone();
                async move {
                    sqlx::query("INSERT INTO charges (seq) VALUES ($1)")
                        .bind(o.seq as i64)
                        .execute(&mut *tx)
                        .await?;
                    d.fetch_add(1, Ordering::Release);
                    anyhow::Ok(())
                }
            })
    } else {
        EventBus::builder().handler_with(options, move |o: BenchOrder| {
            let (d, p) = (d.clone(), p.clone());
            async move {
                sqlx::query("INSERT INTO charges (seq) VALUES ($1)")
                    .bind(o.seq as i64)
                    .execute(&p)
                    .await?;
                d.fetch_add(1, Ordering::Release);
                anyhow::Ok(())
            }
        })
    };
    let started = Instant::now();
    let bus = builder.connect(url).await?;
    let deadline = started + Duration::from_secs(300);
    while done.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            bail!("handled {} of {n}", done.load(Ordering::Acquire));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = bus.shutdown().await;
    Ok(rate)
}
