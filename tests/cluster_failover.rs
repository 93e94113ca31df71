//! Redis Cluster: typed events travel as sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE` on the node
//! serving the channel's slot), durable types on their stream key's node, and the pub/sub
//! queries sum over the nodes. When the primary that owns a subscribed channel is killed, the
//! bus resubscribes on the promoted replica by itself (reporting `Resubscribed`) and delivery
//! resumes. Durable events whose append a replica confirmed (`WAIT 1`) are all handled after
//! the replica of the stream's primary took over.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{ConnectionEvent, ConnectionState, Event, EventBus};
use eventbus_suite::cluster::RedisCluster;
use eventbus_suite::confirmed::{Ledger, publish_until, unhandled_after_failover};
use eventbus_suite::failover::{recording_bus, until_delivered};
use eventbus_suite::{Ping, Seen, bounded, fast, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "cluster_job", durable)]
struct Job {
    n: u64,
}

/// How long the cluster may take to promote the replica.
const FAILOVER: Duration = Duration::from_secs(30);
/// How long after the promotion the bus may take to deliver again.
const RESUME: Duration = Duration::from_secs(10);

fn options() -> RedisOptions {
    fast().watchdog_interval(Some(Duration::from_millis(200)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_use_sharded_pubsub_on_the_owning_node() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let url = cluster.url();
    let owner = cluster.owner_of("events:ping");
    bounded(async move {
        let (pings, jobs) = (Seen::new(), Seen::new());
        let bus = recording_bus(&url, "cluster", options(), (&pings, &jobs), |j: &Job| j.n).await;
        let receipt = bus.publish(Ping { n: 1 }).await.unwrap();
        assert_eq!(receipt.receivers, 1);
        let receipt = bus.publish(Job { n: 1 }).await.unwrap();
        assert!(receipt.entry_id.is_some());
        assert!(
            wait_for(Duration::from_secs(10), || pings.len() == 1
                && jobs.len() == 1)
            .await
        );

        let node = cluster.node(owner);
        assert_eq!(node.command_calls("spublish"), 1);
        assert!(node.command_calls("ssubscribe") >= 1);
        assert_eq!(node.command_calls("publish"), 0);
        assert_eq!(
            cluster
                .node(cluster.owner_of("events:cluster_job"))
                .command_calls("xadd"),
            1
        );
        let channels = bus.channels(None).await.unwrap();
        assert_eq!(channels, vec!["events:ping".to_owned()]);
        let counts = bus.numsub(&["events:ping".to_owned()]).await.unwrap();
        assert_eq!(counts, vec![("events:ping".to_owned(), 1)]);
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_replaced_and_delivery_resumes() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let url = cluster.url();
    bounded(async move {
        let (pings, jobs) = (Seen::new(), Seen::new());
        let bus = recording_bus(&url, "cluster", options(), (&pings, &jobs), |j: &Job| j.n).await;
        let mut events = bus.connection_events();
        until_delivered(&bus, &pings, 0, Duration::from_secs(10), |n| Ping { n }).await;
        until_delivered(&bus, &jobs, 0, Duration::from_secs(10), |n| Job { n }).await;
        let subscriber = |bus: &EventBus| {
            let health = bus.health();
            let sub = health
                .connections
                .into_iter()
                .find(|c| c.role == "subscriber");
            sub.map(|c| (c.state, c.last_error.is_some()))
        };
        assert_eq!(
            subscriber(&bus),
            Some((ConnectionState::Up, false)),
            "{:?}",
            bus.health()
        );

        let owner = cluster.owner_of("events:ping");
        let started = Instant::now();
        let cluster = tokio::task::spawn_blocking(move || {
            let mut cluster = cluster;
            cluster.kill_node(owner);
            cluster.wait_promoted(owner, FAILOVER);
            cluster
        })
        .await
        .unwrap();
        let promoted = started.elapsed();
        let took = until_delivered(&bus, &pings, 1_000, RESUME, |n| Ping { n }).await;
        let took_durable = until_delivered(&bus, &jobs, 1_000, RESUME, |n| Job { n }).await;
        eprintln!(
            "promoted after {promoted:?}; broadcast back {took:?} later, durable {took_durable:?}"
        );
        assert_ne!(cluster.owner_of("events:ping"), owner);
        // Health follows the cluster subscriber: up again, with the loss it went through.
        assert!(
            wait_for(RESUME, || subscriber(&bus)
                == Some((ConnectionState::Up, true)))
            .await,
            "{:?}",
            bus.health()
        );

        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        assert!(
            seen.iter()
                .any(|e| matches!(e, ConnectionEvent::Resubscribed { topics } if *topics >= 1)),
            "{seen:#?}"
        );
        // The gap names the nodes: the killed primary and the promoted replica.
        let (from, to) = (
            format!("127.0.0.1:{owner}"),
            format!("127.0.0.1:{}", cluster.owner_of("events:ping")),
        );
        assert!(
            seen.iter().any(
                |e| matches!(e, ConnectionEvent::Moved { channel, from: f, to: t, .. }
                if channel == "events:ping" && *f == from && *t == to)
            ),
            "no Moved from {from} to {to}: {seen:#?}"
        );
        bus.shutdown().await.unwrap();
    })
    .await;
}

/// The stream of `Job`, and a key of the test's own in the same slot (for `WAIT`).
const JOB_STREAM: &str = "events:cluster_job";
const JOB_PROBE: &str = "{events:cluster_job}:probe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_durable_events_survive_a_killed_owner() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let url = cluster.url();
    bounded(async move {
        let (pings, jobs) = (Seen::new(), Seen::new());
        let bus = recording_bus(&url, "cluster", options(), (&pings, &jobs), |j: &Job| j.n).await;
        let owner = cluster.owner_of(JOB_STREAM);
        let (ledger, stop) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
        let target = (format!("127.0.0.1:{owner}"), JOB_PROBE.to_owned());
        let job = |n| Job { n };
        let publishing = tokio::spawn(publish_until(
            bus.clone(),
            job,
            0,
            target,
            ledger.clone(),
            stop.clone(),
        ));
        assert!(wait_for(RESUME, || ledger.confirmed.len() >= 100).await);

        let cluster = tokio::task::spawn_blocking(move || {
            let mut cluster = cluster;
            cluster.kill_node(owner);
            cluster.wait_promoted(owner, FAILOVER);
            cluster
        })
        .await
        .unwrap();
        stop.store(true, Ordering::Release);
        publishing.await.unwrap();
        let promoted = format!("127.0.0.1:{}", cluster.owner_of(JOB_STREAM));
        let target = (promoted.as_str(), JOB_PROBE);
        let missing = unhandled_after_failover(&bus, &job, target, &ledger, (&jobs, RESUME)).await;
        assert!(
            missing.is_empty(),
            "confirmed but never handled: {missing:?}"
        );
        bus.shutdown().await.unwrap();
    })
    .await;
}
