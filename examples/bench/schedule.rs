//! The scheduling rows: `publish_after` against a durable `publish` (baseline D', the same
//! event appended to its stream, 16 in flight, three rounds interleaved), and how late
//! scheduled events reach a handler when 1 000 fall due each second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use eventbus::{Event, EventBus, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::table::{Row, pct, quantile, rate_text, row};

/// A durable event of about 200 bytes of data.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench_due", durable)]
struct BenchDue {
    seq: u64,
    note: String,
}

impl BenchDue {
    fn new(seq: u64) -> Self {
        BenchDue {
            seq,
            note: "x".repeat(180),
        }
    }
}

const IN_FLIGHT: usize = 16;

/// The rows: scheduling throughput against durable publishing, and lateness at 1 000/s for
/// `steady_secs` seconds.
pub(crate) async fn rows(
    server: &RedisServer,
    n: u64,
    steady_secs: u64,
) -> anyhow::Result<Vec<Row>> {
    let url = server.url();
    let bus = EventBus::builder().connect(&url).await?;
    let (mut plain, mut later) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(rate(&bus, n, None).await?);
        later.push(rate(&bus, n, Some(Duration::from_secs(3600))).await?);
        server.cli(&[
            "DEL",
            "events:bench_due",
            "eventbus:schedule:{events:bench_due}",
        ]);
        server.cli(&["DEL", "eventbus:schedule:{events:bench_due}:items"]);
    }
    bus.shutdown().await?;
    let ratios: Vec<f64> = plain.iter().zip(&later).map(|(p, l)| l / p).collect();
    let (p, l, r) = (median(&plain), median(&later), median(&ratios));
    let mut rows = vec![
        row(
            "publish_after, 16 in flight (D': durable publish)",
            rate_text(p),
            rate_text(l),
        )
        .ratio(format!(
            "{} ({}-{})",
            pct(r),
            pct(min(&ratios)),
            pct(max(&ratios))
        )),
    ];
    rows.push(mover_cpu(server, n).await?);
    rows.extend(lateness(&url, steady_secs).await?);
    Ok(rows)
}

/// The server's CPU time so far (user and system), from `INFO cpu`.
fn server_cpu(server: &RedisServer) -> Duration {
    let info = server.cli(&["INFO", "cpu"]);
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Duration::from_secs_f64(field("used_cpu_user") + field("used_cpu_sys"))
}

/// The server's CPU per event for moving `n` due events into their stream (the move script
/// and its `XADD`s), against appending as many with durable publishes (16 in flight).
async fn mover_cpu(server: &RedisServer, n: u64) -> anyhow::Result<Row> {
    let url = server.url();
    let bus = EventBus::builder().connect(&url).await?;
    let before = server_cpu(server);
    rate(&bus, n, None).await?;
    let append = (server_cpu(server) - before).as_secs_f64() / n as f64;
    // Scheduled a few seconds ahead, then moved while nothing else runs.
    let ahead = Duration::from_secs(3);
    rate(&bus, n, Some(ahead)).await?;
    let queue = "eventbus:schedule:{events:bench_due}";
    let waiting = || server.cli(&["ZCARD", queue]).parse::<u64>().unwrap_or(0);
    let before = server_cpu(server);
    let deadline = Instant::now() + ahead * 10;
    while waiting() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moving = (server_cpu(server) - before).as_secs_f64() / n as f64;
    bus.shutdown().await?;
    server.cli(&["DEL", "events:bench_due"]);
    let us = |s: f64| format!("{:.2} µs", s * 1e6);
    Ok(row(
        "server CPU per event moved when due (D': per durable publish)",
        us(append),
        us(moving),
    )
    .ratio(format!("{:.2}×", moving / append)))
}

/// Events per second of `n` durable publishes, or of `n` scheduled `ahead`.
async fn rate(bus: &EventBus, n: u64, ahead: Option<Duration>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let errors = futures_util::stream::iter(0..n)
        .map(|seq| async move {
            match ahead {
                None => bus.publish(BenchDue::new(seq)).await.is_err(),
                Some(d) => bus.publish_after(BenchDue::new(seq), d).await.is_err(),
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0u64, |e, failed| async move { e + u64::from(failed) })
        .await;
    if errors > 0 {
        bail!("{errors} publishes failed");
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// 1 000 events a second scheduled 1 s ahead for `secs` seconds, handled by a durable handler:
/// the time from each one's due time (the server's) to its handler, p50, p99 and p99.9.
async fn lateness(url: &str, secs: u64) -> anyhow::Result<Vec<Row>> {
    let arrived: Arc<Mutex<HashMap<u64, SystemTime>>> = Arc::default();
    let a = arrived.clone();
    let consumer = EventBus::builder()
        .service("bench")
        .handler_with(HandlerOptions::new().name("due"), move |e: BenchDue| {
            let a = a.clone();
            async move {
                a.lock().unwrap().insert(e.seq, SystemTime::now());
            }
        })
        .connect(url)
        .await?;
    let scheduler = EventBus::builder().connect(url).await?;
    let n = secs * 1000;
    let mut due = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for seq in 1_000_000..1_000_000 + n {
        tick.tick().await;
        let r = scheduler
            .publish_after(BenchDue::new(seq), Duration::from_secs(1))
            .await?;
        due.insert(seq, r.due);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived.lock().unwrap().len() < n as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = arrived.lock().unwrap().clone();
    if arrived.len() < n as usize {
        bail!("{} of {n} scheduled events arrived", arrived.len());
    }
    let mut late: Vec<u64> = due
        .iter()
        .map(|(seq, at)| {
            let got = arrived[seq];
            got.duration_since(*at).unwrap_or_default().as_micros() as u64
        })
        .collect();
    late.sort_unstable();
    let us = |q: f64| format!("{:.1} ms", quantile(&late, q) / 1000.0);
    consumer.shutdown().await?;
    scheduler.shutdown().await?;
    Ok(vec![row(
        "scheduled at 1000/s: due → handler p50 / p99 / p99.9",
        "-",
        format!("{} / {} / {}", us(0.5), us(0.99), us(0.999)),
    )])
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}
