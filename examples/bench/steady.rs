//! The steady-load latency baseline: the same pacing as ours (a publisher process that sends
//! one message every 1/rate s, each on a task of its own), with a raw redis-rs multiplexed
//! connection publishing and a raw redis-rs subscriber in this process timing each message
//! from the publisher's clock. What the machine, the runtime and Redis give at that rate
//! without the bus: the reference for our p99 and p99.9.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eventbus_suite::redis_server::RedisServer;
use futures_util::StreamExt;

use super::table::{Row, quantile, row, times, us};
use super::{arg, now_ns, run_publisher};

/// The channel of the raw steady-load runs.
const RAW_CHANNEL: &str = "bench:steady";

/// `--raw-publisher --url U --count N --rate R`: publishes N messages at R a second through a
/// raw redis-rs connection, each `<sent_ns> <padding>`; prints `done <published> <errors>`.
pub(crate) async fn raw_publisher_main(args: &[String]) -> anyhow::Result<()> {
    let url: String = arg(args, "--url").context("--url")?;
    let count: u64 = arg(args, "--count").context("--count")?;
    let rate: u64 = arg(args, "--rate").context("--rate")?;
    let conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let errors = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..count {
        tokio::time::sleep_until((started + interval.mul_f64(seq as f64)).into()).await;
        let (mut conn, errs) = (conn.clone(), errors.clone());
        tasks.spawn(async move {
            let payload = format!("{} {}", now_ns(), "x".repeat(super::PAYLOAD));
            let sent = redis::cmd("PUBLISH")
                .arg(RAW_CHANNEL)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await;
            if sent.is_err() {
                errs.fetch_add(1, Ordering::Relaxed);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let errors = errors.load(Ordering::Relaxed);
    println!("done {} {errors}", count - errors);
    std::io::stdout().flush()?;
    Ok(())
}

/// Runs the raw publisher process at `rate` for `n` messages against a raw subscriber here;
/// returns the sorted latencies.
pub(crate) async fn raw_steady(
    server: &RedisServer,
    rate: u64,
    n: u64,
) -> anyhow::Result<Vec<u64>> {
    let mut pubsub = redis::Client::open(server.url())?
        .get_async_pubsub()
        .await?;
    pubsub.subscribe(RAW_CHANNEL).await?;
    let receiving = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n as usize);
        let mut messages = pubsub.into_on_message();
        while (latencies.len() as u64) < n {
            let Some(message) = messages.next().await else {
                break;
            };
            let payload = message.get_payload_bytes();
            let sent = payload.split(|b| *b == b' ').next().unwrap_or_default();
            if let Some(sent) = std::str::from_utf8(sent)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                latencies.push(now_ns().saturating_sub(sent));
            }
        }
        latencies
    });
    let args = [
        "--raw-publisher".to_owned(),
        "--count".to_owned(),
        n.to_string(),
        "--rate".to_owned(),
        rate.to_string(),
    ];
    let (published, errors) = run_publisher(&server.url(), &args).await?;
    if errors > 0 || published < n {
        bail!("the raw publisher sent {published} of {n} ({errors} failed)");
    }
    let mut latencies = tokio::time::timeout(Duration::from_secs(5), receiving)
        .await
        .context("the raw subscriber missed messages")??;
    latencies.sort_unstable();
    Ok(latencies)
}

/// The p50 / p99 / p99.9 row of a steady load of `rate` events a second, ours against the
/// raw redis-rs pair at the same rate; the p99.9 target is 1 ms.
pub(crate) fn steady_row(rate: u64, ours: &[u64], raw: &[u64]) -> Row {
    let q = |v: &[u64]| [quantile(v, 0.5), quantile(v, 0.99), quantile(v, 0.999)];
    let (o, r) = (q(ours), q(raw));
    let three = |v: [f64; 3]| format!("{} / {} / {}", us(v[0]), us(v[1]), us(v[2]));
    row(
        format!("latency p50/p99/p99.9 at {rate}/s"),
        format!("R raw redis-rs pair: {}", three(r)),
        three(o),
    )
    .ratio(format!(
        "{} / {} / {}",
        times(o[0] / r[0]),
        times(o[1] / r[1]),
        times(o[2] / r[2])
    ))
    .target("p99.9 ≤ 1 ms", o[2] <= 1e6)
}

/// The p99 at a steady `rate` against C's p50 (one publish at a time, nothing else running).
pub(crate) fn p99_row(rate: u64, ours: &[u64], c_p50: f64) -> Row {
    let p99 = quantile(ours, 0.99);
    row(
        format!("latency p99 at {rate}/s"),
        format!("C p50: {}", us(c_p50)),
        us(p99),
    )
    .ratio(times(p99 / c_p50))
    .target("≤ 5× C p50", p99 <= 5.0 * c_p50)
}
