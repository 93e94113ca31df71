//! The durable rows: Streams against baseline D, `redis-benchmark -c 1 -P 16 XADD`.
//!
//! - durable publish: `bus.publish` of a durable event (`XADD`), 16 in flight;
//! - consume and acknowledge: one consumer bus with a no-op handler reading a stream that
//!   holds N entries from its start (`XREADGROUP` + `XACK` per entry);
//! - latency from publish to handler with one durable event in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventbus::StartFrom;
use eventbus::{DurableOptions, Event, EventBus, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::progress;
use crate::table::{Row, Spread, pct, quantile, rate_text, row, times, us};
use crate::{IN_FLIGHT, PAYLOAD, now_ns, redis_benchmark};

/// The durable benchmark event, of the same size as the pub/sub one.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench_durable", durable)]
struct DurableBench {
    seq: u64,
    sent_ns: u64,
    pad: String,
}

impl DurableBench {
    fn new(seq: u64) -> Self {
        DurableBench {
            seq,
            sent_ns: now_ns(),
            pad: "x".repeat(PAYLOAD - 53),
        }
    }
}

/// What the durable no-op handler saw: a count and, when asked, latencies.
#[derive(Debug, Default)]
struct Sink {
    count: AtomicU64,
    latencies: std::sync::Mutex<Option<Vec<u64>>>,
    notify: Notify,
}

/// A consumer bus whose no-op handler, in a group of its own named after `name`, reads the
/// durable stream from `start`.
async fn consumer(
    url: &str,
    sink: &Arc<Sink>,
    start: StartFrom,
    name: &str,
) -> anyhow::Result<EventBus> {
    let sink = sink.clone();
    let options = HandlerOptions::new()
        .name(name)
        .no_timeout()
        .durable(DurableOptions::new().start_from(start));
    let bus = EventBus::builder()
        .service("bench-consumer")
        .handler_with(options, move |e: DurableBench| {
            let sink = sink.clone();
            async move {
                let now = now_ns();
                if let Some(v) = sink.latencies.lock().unwrap().as_mut() {
                    v.push(now.saturating_sub(e.sent_ns));
                }
                sink.count.fetch_add(1, Ordering::Release);
                sink.notify.notify_one();
            }
        })
        .shutdown_timeout(Duration::from_millis(500))
        .connect(url)
        .await?;
    Ok(bus)
}

/// Publishes `n` durable events, `IN_FLIGHT` at a time; returns appends per second.
async fn publish(bus: &EventBus, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let errors = futures_util::stream::iter(0..n)
        .map(|seq| bus.publish(DurableBench::new(seq)))
        .buffer_unordered(IN_FLIGHT)
        .fold(0u64, |e, r| async move { e + u64::from(r.is_err()) })
        .await;
    if errors > 0 {
        bail!("{errors} durable publishes failed");
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Appends `n` durable events with `publish_all`, 1000 per call; returns appends per second.
async fn publish_all(bus: &EventBus, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut seq = 0;
    while seq < n {
        let end = (seq + 1000).min(n);
        bus.publish_all((seq..end).map(DurableBench::new)).await?;
        seq = end;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Reads the `n` entries already in the stream with a new group from its start; returns
/// entries handled and acknowledged per second.
async fn consume(url: &str, n: u64) -> anyhow::Result<f64> {
    let sink = Arc::new(Sink::default());
    let started = Instant::now();
    let bus = consumer(url, &sink, StartFrom::Beginning, "consume").await?;
    let deadline = started + Duration::from_secs(120);
    while sink.count.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            bail!("consumed {} of {n}", sink.count.load(Ordering::Acquire));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = bus.shutdown().await;
    Ok(rate)
}

/// `--profile consume`: appends `n` entries, then reads and acknowledges them with one
/// consumer; returns entries per second.
pub(crate) async fn profile_consume(server: &RedisServer, n: u64) -> anyhow::Result<f64> {
    let url = server.url();
    let bus = EventBus::builder().connect(&url).await?;
    publish(&bus, n).await?;
    let _ = bus.shutdown().await;
    consume(&url, n).await
}

/// Latencies from publish to handler, one durable event in flight.
async fn one_in_flight(url: &str, samples: u64) -> anyhow::Result<Vec<u64>> {
    let sink = Arc::new(Sink::default());
    let sub = consumer(url, &sink, StartFrom::New, "latency").await?;
    let publisher = EventBus::builder()
        .service("bench-publisher")
        .connect(url)
        .await?;
    let warmup = samples / 10;
    for round in 0..warmup + samples {
        if round == warmup {
            *sink.latencies.lock().unwrap() = Some(Vec::new());
        }
        let before = sink.count.load(Ordering::Acquire);
        publisher.publish(DurableBench::new(round)).await?;
        let delivered = async {
            loop {
                let notified = sink.notify.notified();
                if sink.count.load(Ordering::Acquire) > before {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), delivered)
            .await
            .is_err()
        {
            bail!("durable event {round} was not handled within 2 s");
        }
    }
    let _ = publisher.shutdown().await;
    let _ = sub.shutdown().await;
    let mut v = sink.latencies.lock().unwrap().take().unwrap_or_default();
    v.sort_unstable();
    Ok(v)
}

/// Runs the durable measures; `c_p50` is baseline C's median latency in ns.
pub(crate) async fn rows(
    server: &RedisServer,
    n: u64,
    samples: u64,
    c_p50: f64,
) -> anyhow::Result<Vec<Row>> {
    let url = server.url();
    let envelope = String::from_utf8(
        eventbus::Envelope::new(DurableBench::new(0))
            .with_source("bench-publisher")
            .encode()?,
    )?;
    progress::stage(format!(
        "baseline D: redis-benchmark -c 1 -P 16 -n {n} XADD"
    ));
    let xadd = [
        "XADD",
        "events:bench_raw",
        "*",
        "envelope",
        envelope.as_str(),
    ];
    let d = || redis_benchmark(server.port(), &["-P", "16"], n, &xadd);
    let [d_before, _, _] = d().await?;

    progress::stage(format!("ours: durable publish, {IN_FLIGHT} in flight"));
    let bus = EventBus::builder()
        .service("bench-publisher")
        .connect(&url)
        .await?;
    let ours_rps = publish(&bus, n).await?;
    progress::stage("ours: durable publish_all, 1000 a call");
    let batch_rps = publish_all(&bus, n).await?;
    let _ = bus.shutdown().await;
    progress::stage("baseline D again, between ours");
    let [d_between, _, _] = d().await?;

    progress::stage(format!(
        "ours: one consumer reading {n} entries and acknowledging each"
    ));
    let consume_rps = consume(&url, n).await?;
    progress::stage("baseline D again, after ours");
    let [d_after, _, _] = d().await?;
    // D moves between rounds as A does: the ratios are to its median.
    let d = Spread::of(&[d_before, d_between, d_after]);

    progress::stage("ours: durable latency, one event in flight");
    let single = one_in_flight(&url, samples).await?;
    let latency = [quantile(&single, 0.5), quantile(&single, 0.99)];
    Ok(table(
        &d,
        [ours_rps, batch_rps, consume_rps],
        latency,
        c_p50,
    ))
}

/// The durable rows: publish, `publish_all` and consume against D (rates), and latency (p50
/// and p99, nanoseconds) against C's p50.
fn table(
    d: &Spread,
    [ours_rps, batch_rps, consume_rps]: [f64; 3],
    [p50, p99]: [f64; 2],
    c_p50: f64,
) -> Vec<Row> {
    let d_rps = d.median;
    vec![
        row(
            format!("durable publish, {IN_FLIGHT} in flight"),
            format!(
                "D redis-benchmark -P 16 XADD, before, between and after ours: {}",
                d.text()
            ),
            rate_text(ours_rps),
        )
        .ratio(pct(ours_rps / d_rps))
        .target("≥ 60% of D", ours_rps >= 0.6 * d_rps),
        row(
            "durable publish_all, 1000 a call",
            format!("D: {}", rate_text(d_rps)),
            rate_text(batch_rps),
        )
        .ratio(pct(batch_rps / d_rps)),
        row(
            "durable consume + ack, one consumer",
            format!("D: {}", rate_text(d_rps)),
            rate_text(consume_rps),
        )
        .ratio(pct(consume_rps / d_rps))
        .target("≥ 40% of D", consume_rps >= 0.4 * d_rps),
        row(
            "durable latency p50 / p99, 1 in flight",
            format!("C p50: {}", us(c_p50)),
            format!("{} / {}", us(p50), us(p99)),
        )
        .ratio(format!("{} / {}", times(p50 / c_p50), times(p99 / c_p50))),
    ]
}
