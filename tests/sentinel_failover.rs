//! Sentinel failover: the primary is killed (SIGKILL) while a broadcast handler is subscribed
//! and a durable handler reads. The bus must find the promoted replica through the sentinels
//! by itself, resubscribe (reporting `Resubscribed`), and deliver again within the failover
//! time plus a few seconds; a publish made during the switch fails with a typed error once its
//! deadline passes. Durable events whose append the replica confirmed (`WAIT 1`) are all
//! handled after the failover.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{ConnectionEvent, Event, EventBus, PublishErrorKind};
use eventbus_suite::confirmed::{Ledger, publish_until, unhandled_after_failover};
use eventbus_suite::failover::until_delivered;
use eventbus_suite::sentinel::SentinelSet;
use eventbus_suite::{Ping, Seen, bounded, fast, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "failover_job", durable)]
struct Job {
    n: u64,
}

/// How long the sentinels may take to promote the replica.
const FAILOVER: Duration = Duration::from_secs(30);
/// How long after the promotion the bus may take to deliver again.
const RESUME: Duration = Duration::from_secs(8);

fn options() -> RedisOptions {
    fast().watchdog_interval(Some(Duration::from_millis(200)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_delivery_resumes() {
    let Some(set) = SentinelSet::start_or_skip() else {
        return;
    };
    let url = set.url();
    bounded(async move {
        let (pings, jobs) = (Seen::new(), Seen::new());
        let (p, j) = (pings.clone(), jobs.clone());
        let bus = EventBus::builder()
            .service("failover")
            .redis_options(options())
            .handler(move |e: Ping| {
                let p = p.clone();
                async move { p.push(e.n) }
            })
            .handler(move |e: Job| {
                let j = j.clone();
                async move { j.push(e.n) }
            })
            .connect(&url)
            .await
            .expect("connect through the sentinels");
        bus.ready(Duration::from_secs(10)).await.unwrap();
        let mut events = bus.connection_events();
        until_delivered(&bus, &pings, 0, Duration::from_secs(10), |n| Ping { n }).await;
        until_delivered(&bus, &jobs, 0, Duration::from_secs(10), |n| Job { n }).await;

        // A bus whose publishes may wait only briefly: during the switch they fail, typed.
        let impatient = EventBus::builder()
            .redis_options(options().publish_deadline(Duration::from_millis(500)))
            .connect(&url)
            .await
            .unwrap();

        let (set, old) = tokio::task::spawn_blocking(move || {
            let mut set = set;
            let old = set.kill_master();
            (set, old)
        })
        .await
        .unwrap();
        let started = Instant::now();
        let err = impatient
            .publish(Ping { n: 1 })
            .await
            .expect_err("no primary to publish to right after the kill");
        assert!(
            matches!(
                err.kind(),
                PublishErrorKind::Disconnected | PublishErrorKind::Timeout
            ),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{err}");

        let (set, new) = tokio::task::spawn_blocking(move || {
            let new = set.wait_failover(&old, FAILOVER);
            (set, new)
        })
        .await
        .unwrap();
        let promoted = started.elapsed();

        let took = until_delivered(&bus, &pings, 1_000, RESUME, |n| Ping { n }).await;
        let took_durable = until_delivered(&bus, &jobs, 1_000, RESUME, |n| Job { n }).await;
        eprintln!(
            "failover to {new} after {promoted:?}; broadcast back {took:?} later, durable {took_durable:?}"
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
        impatient.shutdown().await.unwrap();
        bus.shutdown().await.unwrap();
        drop(set);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_master_name_is_a_clear_error() {
    let Some(set) = SentinelSet::start_or_skip() else {
        return;
    };
    let url = set.url().replace("/eventbus", "/nosuchmaster");
    let err = EventBus::builder()
        .redis_options(options())
        .connect(&url)
        .await
        .expect_err("no such master");
    let text = err.to_string();
    assert!(text.contains("nosuchmaster"), "{text}");
    assert!(text.contains("sentinels"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_can_sit_on_a_replica() {
    let Some(set) = SentinelSet::start_or_skip() else {
        return;
    };
    let url = set.url();
    bounded(async move {
        let pings = Seen::new();
        let p = pings.clone();
        let bus = EventBus::builder()
            .redis_options(options().subscribe_on_replica(true))
            .handler(move |e: Ping| {
                let p = p.clone();
                async move { p.push(e.n) }
            })
            .connect(&url)
            .await
            .unwrap();
        bus.ready(Duration::from_secs(10)).await.unwrap();
        until_delivered(&bus, &pings, 0, Duration::from_secs(10), |n| Ping { n }).await;
        let primary = set.master_addr();
        for node in set.nodes() {
            let on_primary = primary.ends_with(&format!(":{}", node.port()));
            // The sentinels hold pub/sub connections of their own: count ours by channel.
            let numsub = node.cli(&["PUBSUB", "NUMSUB", "events:ping"]);
            let expected = if on_primary { "0" } else { "1" };
            assert_eq!(
                numsub.lines().nth(1),
                Some(expected),
                "port {}",
                node.port()
            );
        }
        bus.shutdown().await.unwrap();
    })
    .await;
}

/// A bus whose durable handler records the `n` of every `Job`.
async fn job_recorder(url: &str, jobs: &Seen<u64>) -> EventBus {
    let j = jobs.clone();
    let bus = EventBus::builder()
        .service("failover")
        .redis_options(options())
        .handler(move |e: Job| {
            let j = j.clone();
            async move { j.push(e.n) }
        })
        .connect(url)
        .await
        .expect("connect through the sentinels");
    bus.ready(Duration::from_secs(10)).await.unwrap();
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_durable_events_survive_a_killed_primary() {
    const PROBE: &str = "failover:probe";
    let Some(set) = SentinelSet::start_or_skip() else {
        return;
    };
    let url = set.url();
    bounded(async move {
        let jobs = Seen::new();
        let bus = job_recorder(&url, &jobs).await;
        let (ledger, stop) = (Ledger::default(), Arc::new(AtomicBool::new(false)));
        let job = |n| Job { n };
        let target = (set.master_addr(), PROBE.to_owned());
        let publishing = tokio::spawn(publish_until(
            bus.clone(),
            job,
            0,
            target,
            ledger.clone(),
            stop.clone(),
        ));
        assert!(wait_for(RESUME, || ledger.confirmed.len() >= 100).await);

        let (set, new) = tokio::task::spawn_blocking(move || {
            let mut set = set;
            let old = set.kill_master();
            let new = set.wait_failover(&old, FAILOVER);
            (set, new)
        })
        .await
        .unwrap();
        stop.store(true, Ordering::Release);
        publishing.await.unwrap();
        let target = (new.as_str(), PROBE);
        let missing = unhandled_after_failover(&bus, &job, target, &ledger, (&jobs, RESUME)).await;
        assert!(
            missing.is_empty(),
            "confirmed but never handled: {missing:?}"
        );
        bus.shutdown().await.unwrap();
        drop(set);
    })
    .await;
}
