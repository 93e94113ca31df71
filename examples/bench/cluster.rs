//! The cluster rows: a local Redis Cluster (three primaries, three replicas) against baseline
//! F, `redis-benchmark -c 1 -P 16 SPUBLISH events:bench <200 bytes>` on the primary that owns
//! the channel's slot, with a raw sharded subscriber attached.
//!
//! - publish: `bus.publish` on a bus connected to the cluster URL (a typed event goes out as
//!   `SPUBLISH`), 16 in flight;
//! - end to end: a publisher process on the cluster URL to a subscriber bus with a no-op
//!   handler, as the single-server end-to-end row.
//!
//! Every node, the publisher and the subscriber share the machine's cores, so on a small
//! machine the ratios are the cluster path's overhead, not its scaling; there are no targets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventbus::EventBus;
use eventbus_suite::cluster::RedisCluster;
use redis::cluster::ClusterClientBuilder;
use redis::{ProtocolVersion, PushKind};

use crate::table::{Row, pct, rate_text, row};
use crate::{CHANNEL, Drain, IN_FLIGHT, PAYLOAD, bus_publish, e2e, progress, redis_benchmark};

/// The header line that says what the cluster rows can and cannot show.
pub(crate) fn note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "cluster rows: three primaries and three replicas on loopback; all six nodes, the \
         publisher and the subscriber share the same {cores} cores, so ours/F is the cluster \
         path's overhead, not scaling"
    )
}

/// A raw redis-rs subscriber that counts the messages `SSUBSCRIBE`d on [`CHANNEL`]: a RESP3
/// cluster connection seeded with `node_url`, its pushes counted by a task.
async fn sharded_drain(node_url: &str) -> anyhow::Result<Drain> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new([node_url])
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()?;
    let mut conn = client.get_async_connection().await?;
    conn.ssubscribe(CHANNEL).await?;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        // The subscription lives as long as its connection.
        let _conn = conn;
        while let Some(push) = rx.recv().await {
            if push.kind == PushKind::SMessage {
                c.fetch_add(1, Ordering::Release);
            }
        }
    });
    Ok(Drain { count, task })
}

/// Baseline F: redis-benchmark `-P 16` publishing `n` payloads with `SPUBLISH` on the node on
/// `port`; returns its rate and what `drain` received.
async fn baseline_f(port: u16, n: u64, drain: &Drain) -> anyhow::Result<(f64, u64)> {
    let payload = "x".repeat(PAYLOAD);
    let command = ["SPUBLISH", CHANNEL, payload.as_str()];
    let [rps, _, _] = redis_benchmark(port, &["-P", "16"], n, &command).await?;
    let received = crate::wait_count(&drain.count, n, Duration::from_secs(3)).await;
    Ok((rps, received))
}

/// `bus.publish` of `n` events on the cluster at `url`, `IN_FLIGHT` at a time, after a short
/// warm-up; returns publishes per second.
async fn ours_publish(url: &str, n: u64) -> anyhow::Result<f64> {
    let bus = EventBus::builder()
        .service("bench-publisher")
        .connect(url)
        .await?;
    bus_publish(&bus, (n / 20).max(100)).await?;
    let rate = bus_publish(&bus, n).await;
    let _ = bus.shutdown().await;
    rate
}

/// Starts a cluster and measures the cluster rows with `n` events each.
pub(crate) async fn rows(n: u64) -> anyhow::Result<Vec<Row>> {
    progress::stage("cluster: starting three primaries and three replicas");
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await?;
    let url = cluster.url();
    let owner = cluster.owner_of(CHANNEL);

    progress::stage(format!(
        "baseline F: redis-benchmark -c 1 -P 16 -n {n} SPUBLISH on the owning node"
    ));
    let drain = sharded_drain(&cluster.node(owner).url()).await?;
    let (f_rps, received) = baseline_f(owner, n, &drain).await?;
    progress::stage(format!("cluster: bus.publish, {IN_FLIGHT} in flight"));
    let ours_rps = ours_publish(&url, n).await?;
    drain.task.abort();

    progress::stage(format!(
        "cluster: end to end, {n} events from another process"
    ));
    let run = e2e(&url, n, None, false, false).await?;
    tokio::task::spawn_blocking(move || drop(cluster)).await?;

    let got = if received < n {
        format!(" (its subscriber got {received} of {n})")
    } else {
        String::new()
    };
    Ok(vec![
        row(
            format!("cluster: publish, {IN_FLIGHT} in flight"),
            format!(
                "F redis-benchmark -P 16 SPUBLISH on the owning node: {}{got}",
                rate_text(f_rps)
            ),
            rate_text(ours_rps),
        )
        .ratio(pct(ours_rps / f_rps)),
        row(
            "cluster: end to end, publisher process → bus",
            format!("F: {}", rate_text(f_rps)),
            format!(
                "{} ({} of {} delivered, {} lost)",
                rate_text(run.rate),
                run.delivered,
                run.published,
                run.published.saturating_sub(run.delivered)
            ),
        )
        .ratio(pct(run.rate / f_rps)),
    ])
}
