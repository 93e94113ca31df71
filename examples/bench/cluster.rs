//! The cluster rows: a local Redis Cluster (three primaries, three replicas) against baseline
//! F, `redis-benchmark -c 1 -P 16 SPUBLISH events:bench <200 bytes>` on the primary that owns
//! the channel's slot, with a raw sharded subscriber attached.
//!
//! - publish: `bus.publish` on a bus connected to the cluster URL (a typed event goes out as
//!   `SPUBLISH`), 16 in flight;
//! - end to end: a publisher process on the cluster URL to a subscriber bus with a no-op
//!   handler, as the single-server end-to-end row;
//! - the subscriber alone: the subscribing bus fed by redis-benchmark `-P 16 SPUBLISH` of one
//!   envelope on the owning node, which says whether end to end is bounded by the subscriber.
//!
//! Each is measured in [`ROUNDS`] interleaved rounds; cells are medians with their spread.
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

use crate::table::{Row, Spread, pct, rate_text, row};
use crate::{
    CHANNEL, Drain, IN_FLIGHT, PAYLOAD, bus_publish, e2e, progress, redis_benchmark, subscriber_fed,
};

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

/// Rounds of each measure.
const ROUNDS: usize = 3;

/// What one round measured: F, our publish, our end to end, our subscriber alone (rates), and
/// what F's subscriber and ours received of how many.
struct Round {
    rates: [f64; 4],
    f_received: u64,
    delivered: u64,
    published: u64,
}

/// One round: F, our publish and our end to end, `n` events each.
async fn round(cluster: &RedisCluster, n: u64) -> anyhow::Result<Round> {
    let owner = cluster.owner_of(CHANNEL);
    let drain = sharded_drain(&cluster.node(owner).url()).await?;
    let (f_rps, f_received) = baseline_f(owner, n, &drain).await?;
    drain.task.abort();
    let ours_rps = ours_publish(&cluster.url(), n).await?;
    let run = e2e(&cluster.url(), n, None, false, false).await?;
    let (_, alone, _, _) = subscriber_fed(&cluster.url(), owner, "SPUBLISH", n).await?;
    Ok(Round {
        rates: [f_rps, ours_rps, run.rate, alone],
        f_received,
        delivered: run.delivered,
        published: run.published,
    })
}

/// Starts a cluster and measures the cluster rows with `n` events each, in [`ROUNDS`]
/// interleaved rounds (F, ours, end to end); each cell is a median with its spread.
pub(crate) async fn rows(n: u64) -> anyhow::Result<Vec<Row>> {
    progress::stage("cluster: starting three primaries and three replicas");
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await?;
    let mut measured: [Vec<f64>; 4] = Default::default();
    let (mut f_short, mut delivered, mut published) = (0, 0, 0);
    for r in 1..=ROUNDS {
        progress::stage(format!(
            "cluster round {r}/{ROUNDS}: F redis-benchmark -P 16 -n {n} SPUBLISH on the owning \
             node, bus.publish {IN_FLIGHT} in flight, end to end, the subscriber alone"
        ));
        let round = round(&cluster, n).await?;
        for (m, rate) in measured.iter_mut().zip(round.rates) {
            m.push(rate);
        }
        f_short += n.saturating_sub(round.f_received);
        delivered += round.delivered;
        published += round.published;
    }
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    let [f, ours, run, alone] = measured.map(|v| Spread::of(&v));
    let got = if f_short > 0 {
        format!(" (its subscriber missed {f_short})")
    } else {
        String::new()
    };
    Ok(vec![
        row(
            format!("cluster: publish, {IN_FLIGHT} in flight ({ROUNDS} rounds)"),
            format!(
                "F redis-benchmark -P 16 SPUBLISH on the owning node: {}{got}",
                f.text()
            ),
            ours.text(),
        )
        .ratio(pct(ours.median / f.median))
        .target("≥ 60% of F", ours.median >= 0.6 * f.median),
        row(
            format!("cluster: end to end, publisher process → bus ({ROUNDS} rounds)"),
            format!("F: {}", rate_text(f.median)),
            format!(
                "{} ({delivered} of {published} delivered, {} lost)",
                run.text(),
                published.saturating_sub(delivered)
            ),
        )
        .ratio(pct(run.median / f.median))
        .target("≥ 60% of F", run.median >= 0.6 * f.median),
        row(
            "  cluster subscriber alone (fed by redis-benchmark SPUBLISH)",
            format!("F: {}", rate_text(f.median)),
            alone.text(),
        )
        .ratio(pct(alone.median / f.median)),
    ])
}
