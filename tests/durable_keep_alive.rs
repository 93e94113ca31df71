//! Entries a live consumer holds stay its own: a consumer working through a prefetched batch
//! slowly, or running one long job, is not claimed from by a live peer; a consumer whose
//! process was killed is, within about `claim_idle`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::{DurableOptions, EventBus, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;

mod durable_worker;
use durable_worker::OrderPlaced;

const LIMIT: Duration = Duration::from_secs(120);

/// Not a test: the worker process the tests start (see `durable_worker`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    durable_worker::run_if_asked().await;
}

/// How often each order ran, across every consumer.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<u64, u32>>>);

impl Runs {
    fn record(&self, id: u64) {
        *self.0.lock().unwrap().entry(id).or_default() += 1;
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
}

/// A bus whose handler takes `work` per order, counted into `runs`.
async fn consumer(url: &str, runs: &Runs, work: Duration, claim_idle: Duration) -> EventBus {
    let r = runs.clone();
    let durable = DurableOptions::new()
        .group("billing:charge")
        .claim_idle(claim_idle);
    EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().timeout(work * 3).durable(durable),
            move |o: OrderPlaced| {
                let r = r.clone();
                async move {
                    tokio::time::sleep(work).await;
                    r.record(o.order_id);
                }
            },
        )
        .connect(url)
        .await
        .unwrap()
}

async fn publish(url: &str, ids: std::ops::Range<u64>) {
    let bus = EventBus::builder()
        .service("shop")
        .connect(url)
        .await
        .unwrap();
    for order_id in ids {
        let order = OrderPlaced {
            order_id,
            total: 1.0,
        };
        bus.publish(order).await.unwrap();
    }
    bus.shutdown().await.unwrap();
}

/// 400 jobs of 50 ms on two consumers with `claim_idle` 2 s: each reads up to 256 at a time,
/// so its last ones wait about 12 s behind the others, far past `claim_idle`. Kept alive,
/// none is claimed by the other live consumer: exactly 400 runs, nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_consumer_s_prefetched_entries_are_not_claimed() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let runs = Runs::default();
    let (work, idle) = (Duration::from_millis(50), Duration::from_secs(2));
    let a = consumer(&url, &runs, work, idle).await;
    let b = consumer(&url, &runs, work, idle).await;
    publish(&url, 0..400).await;
    assert!(
        wait_for(LIMIT, || runs.distinct() == 400).await,
        "{} of 400",
        runs.distinct()
    );
    // Watched for claims and poison to show, had they happened.
    let again = wait_for(idle * 2, || runs.total() > 400).await;
    assert!(!again, "{} runs", runs.total());
    assert_eq!(runs.total(), 400, "each job ran once");
    for bus in [&a, &b] {
        let m = &bus.metrics().handlers[0];
        assert_eq!((m.claimed, m.dead_lettered), (0, 0), "{m:#?}");
    }
    let pending = server.cli(&["XPENDING", "events:order_placed", "billing:charge"]);
    assert!(pending.starts_with('0'), "{pending}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// One job that runs 4 s, four times `claim_idle`, with a live peer waiting: it runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_claim_idle_runs_once() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let runs = Runs::default();
    let (work, idle) = (Duration::from_secs(4), Duration::from_secs(1));
    let a = consumer(&url, &runs, work, idle).await;
    let b = consumer(&url, &runs, work, idle).await;
    publish(&url, 0..1).await;
    assert!(wait_for(LIMIT, || runs.distinct() == 1).await);
    let again = wait_for(idle * 3, || runs.total() > 1).await;
    assert!(!again, "{} runs", runs.total());
    assert_eq!(runs.total(), 1, "one run");
    let claimed: u64 = [&a, &b]
        .iter()
        .map(|b| b.metrics().handlers[0].claimed)
        .sum();
    assert_eq!(claimed, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The group's pending entries per consumer (`XPENDING <stream> <group>`'s summary).
fn pending_by_consumer(server: &RedisServer) -> Vec<String> {
    let out = server.cli(&["XPENDING", "events:order_placed", "billing:charge"]);
    out.lines().skip(3).map(str::to_owned).collect()
}

/// A worker holds 100 orders behind a handler stalled for 60 s; a second worker with
/// `claim_idle` 1 s claims none of them for 3 s while the first lives, and all of them within
/// about `claim_idle` once the first is killed with `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_keeps_its_entries_until_it_dies() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let mut stalled = durable_worker::start(&url, 1000, 60_000, 300_000).await;
    publish(&url, 0..100).await;
    let summary = || server.cli(&["XPENDING", "events:order_placed", "billing:charge"]);
    assert!(
        wait_for(LIMIT, || summary().starts_with("100")).await,
        "{}",
        summary()
    );
    let other = durable_worker::start(&url, 1000, 0, 300_000).await;
    let took = wait_for(Duration::from_secs(3), || !other.handled.is_empty()).await;
    assert!(!took, "{:?}", other.handled.snapshot());
    assert!(other.handled.is_empty(), "{:?}", other.handled.snapshot());
    let owners = pending_by_consumer(&server);
    assert!(summary().starts_with("100"), "{}", summary());
    assert!(
        owners.iter().any(|l| l.contains(&stalled.tag())),
        "{owners:?}"
    );
    stalled.child.kill().await.unwrap();
    let killed = Instant::now();
    assert!(wait_for(LIMIT, || other.handled.len() == 100).await);
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(4), "claimed after {took:?}");
    let mut got = other.handled.snapshot();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    drop(other);
}
