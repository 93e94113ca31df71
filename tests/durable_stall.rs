//! A stalled handler under 100 000 durable events on a real redis-server: nothing is lost,
//! the process's memory stays bounded (the stalled handler reads only what its queue holds),
//! and the other handler of the same type is not held up.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{Event, EventBus, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "sample_recorded", durable)]
struct SampleRecorded {
    n: u64,
    payload: String,
}

const N: u64 = 100_000;
const PUBLISHERS: u64 = 16;
const CAPACITY: usize = 32;
const LIMIT: Duration = Duration::from_secs(180);

/// Distinct `n`s a handler finished, and how many runs in all.
#[derive(Clone, Default)]
struct Handled(Arc<Mutex<(HashSet<u64>, u64)>>);

impl Handled {
    fn add(&self, n: u64) {
        let mut h = self.0.lock().unwrap();
        h.0.insert(n);
        h.1 += 1;
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().0.len()
    }
    fn runs(&self) -> u64 {
        self.0.lock().unwrap().1
    }
}

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

async fn publish_all(bus: &EventBus) {
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for n in (p..N).step_by(PUBLISHERS as usize) {
                let payload = format!("{n:0>200}");
                bus.publish(SampleRecorded { n, payload }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handler_loses_nothing_holds_no_one_up_and_stays_small() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let gate = Arc::new(Semaphore::new(0));
    let (stalled, steady) = (Handled::default(), Handled::default());
    let (gate2, stalled2, steady2) = (gate.clone(), stalled.clone(), steady.clone());
    let bus = EventBus::builder()
        .service("lab")
        .handler_with(
            // Stalled, not slow: with the default 30 s timeout, runs held longer than that
            // (publishing 100 000 events takes about that on a busy machine) would time out
            // and their entries go to the dead letters.
            HandlerOptions::new()
                .name("stalled")
                .queue_capacity(CAPACITY)
                .concurrency(4)
                .no_timeout(),
            move |e: SampleRecorded| {
                let (gate, stalled) = (gate2.clone(), stalled2.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    stalled.add(e.n);
                }
            },
        )
        .handler_with(
            HandlerOptions::new().name("steady").concurrency(4),
            move |e: SampleRecorded| {
                let steady = steady2.clone();
                async move { steady.add(e.n) }
            },
        )
        .connect(&server.url())
        .await
        .unwrap();
    let before = rss();
    publish_all(&bus).await;
    assert!(
        wait_for(LIMIT, || steady.distinct() == N as usize).await,
        "the steady handler was held up: {} of {N}",
        steady.distinct()
    );
    let grown = rss().saturating_sub(before);
    let m = bus.metrics();
    let held = m.handler("stalled").unwrap();
    assert_eq!(stalled.runs(), 0);
    assert!(
        held.received <= (CAPACITY + 4) as u64,
        "the stalled handler read only what its queue holds: {}",
        held.received
    );
    assert!(
        grown < 64 << 20,
        "memory grew by {} MiB with 100 000 events waiting",
        grown >> 20
    );
    let groups = bus.groups().await.unwrap();
    let waiting = groups.iter().find(|g| g.group == "lab:stalled").unwrap();
    assert_eq!(
        waiting.lag.unwrap() + waiting.pending,
        N,
        "the rest waits in the stream, not here: {waiting:?}"
    );

    gate.add_permits(N as usize);
    assert!(
        wait_for(LIMIT, || stalled.distinct() == N as usize).await,
        "the stalled handler caught up: {} of {N}",
        stalled.distinct()
    );
    bus.shutdown().await.unwrap();
    let m = bus.metrics();
    for name in ["stalled", "steady"] {
        let h = m.handler(name).unwrap();
        assert_eq!((h.handled, h.dropped, h.failed), (N, 0, 0), "{name}: {h:?}");
    }
    assert_eq!((stalled.runs(), steady.runs()), (N, N), "each exactly once");
}
