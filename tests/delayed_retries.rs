//! Delayed retries: a durable entry whose immediate attempts failed is handed off and comes
//! back later to its own group only, its handler free for other entries meanwhile; after the
//! last delay it is dead-lettered. On `memory://` and a real redis-server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::{ConnectErrorKind, Event, EventBus, HandlerOptions, RetryPolicy};
use eventbus_suite::{TestEnv, fast, poll_until, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "retried_job", durable)]
struct Job {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "retried_note")]
struct Note {
    n: u64,
}

const LIMIT: Duration = Duration::from_secs(60);
/// Jobs from this number on succeed at once: the fast ones.
const FAST: u64 = 100_000;

/// Per job: how often the worker ran it, how often it succeeded, when it last succeeded.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Tally>>);

/// Job → (runs, successes, last success).
type Tally = HashMap<u64, (u32, u32, Option<Instant>)>;

impl Runs {
    /// One run of job `n`: fails its first `fail` runs.
    fn run(&self, n: u64, fail: u32) -> anyhow::Result<()> {
        let mut all = self.0.lock().unwrap();
        let entry = all.entry(n).or_default();
        entry.0 += 1;
        anyhow::ensure!(
            n >= FAST || entry.0 > fail,
            "job {n}: downstream unavailable"
        );
        entry.1 += 1;
        entry.2 = Some(Instant::now());
        Ok(())
    }
    fn succeeded(&self, range: std::ops::Range<u64>) -> usize {
        let all = self.0.lock().unwrap();
        range
            .filter(|n| all.get(n).is_some_and(|e| e.1 > 0))
            .count()
    }
    fn get(&self, n: u64) -> (u32, u32, Option<Instant>) {
        self.0.lock().unwrap().get(&n).copied().unwrap_or_default()
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy::attempts(2)
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .then_delayed([Duration::from_secs(1), Duration::from_secs(2)])
}

/// `slow` jobs failing their first 4 runs (two immediate attempts, twice), then `fast` jobs
/// that succeed, all on a worker of concurrency 1; an audit service's group on the same stream.
async fn retried_jobs_come_back_to_their_group_only(url: &str, slow: u64, fast_jobs: u64) {
    let runs = Runs::default();
    let audit: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let r = runs.clone();
    let redis = url.starts_with("redis");
    let mut worker = EventBus::builder().service("workers");
    let mut auditor = EventBus::builder().service("audit");
    if redis {
        worker = worker.redis_options(fast());
        auditor = auditor.redis_options(fast());
    }
    let worker = worker
        .handler_with(
            HandlerOptions::new()
                .name("work")
                .retry(policy())
                .concurrency(1),
            move |job: Job| {
                let r = r.clone();
                async move { r.run(job.n, 4) }
            },
        )
        .connect(url)
        .await
        .unwrap();
    let a = audit.clone();
    let auditor = auditor
        .handler(move |job: Job| {
            let a = a.clone();
            async move { *a.lock().unwrap().entry(job.n).or_default() += 1 }
        })
        .connect(url)
        .await
        .unwrap();
    for n in 0..slow {
        worker.publish(Job { n }).await.unwrap();
    }
    // Every slow job has been handed off once: the worker is free.
    let handed_off = || worker.metrics().handler("work").unwrap().deferred >= slow;
    assert!(
        wait_for(LIMIT, handed_off).await,
        "{:?}",
        worker.metrics().handler("work")
    );
    let started = Instant::now();
    for n in FAST..FAST + fast_jobs {
        worker.publish(Job { n }).await.unwrap();
    }
    let fast_done = || runs.succeeded(FAST..FAST + fast_jobs) == fast_jobs as usize;
    assert!(
        wait_for(LIMIT, fast_done).await,
        "the fast jobs were not handled"
    );
    let fast_took = started.elapsed();
    let all_done = || runs.succeeded(0..slow) == slow as usize;
    assert!(
        wait_for(LIMIT, all_done).await,
        "{} of {slow} slow jobs done",
        runs.succeeded(0..slow)
    );
    // The fast jobs, published after the slow ones, were handled while slow ones waited.
    let last = |range: std::ops::Range<u64>| range.filter_map(|n| runs.get(n).2).max();
    assert!(
        last(FAST..FAST + fast_jobs) < last(0..slow),
        "the worker was held by the waiting jobs"
    );
    for n in 0..slow {
        let (ran, ok, _) = runs.get(n);
        assert_eq!(
            (ran, ok),
            (5, 1),
            "job {n}: 2 + 2 failed attempts, then handled once"
        );
    }
    let m = worker.metrics();
    let work = m.handler("work").unwrap();
    assert_eq!(work.deferred, 2 * slow, "each slow job handed off twice");
    assert_eq!(work.handled, slow + fast_jobs);
    assert_eq!(work.failed, 0);
    let all = slow + fast_jobs;
    assert!(wait_for(LIMIT, || audit.lock().unwrap().len() == all as usize).await);
    let once = audit.lock().unwrap().values().all(|n| *n == 1);
    assert!(once, "the audit group saw a retry");
    println!("{url}: {fast_jobs} fast jobs handled in {fast_took:?} while {slow} slow ones waited");
    worker.shutdown().await.unwrap();
    auditor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_thousand_retried_entries_free_the_worker_and_stay_in_their_group() {
    let Some(env) = TestEnv::redis() else {
        return;
    };
    retried_jobs_come_back_to_their_group_only(&env.url, 1000, 200).await;
    let server = env.server.as_ref().unwrap();
    let retry = "eventbus:retry:{events:retried_job}:workers:work";
    assert_eq!(
        server.cli(&["XLEN", retry]),
        "2000",
        "every retry came back on its own stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_retried_entries_free_the_worker_and_stay_in_their_group() {
    let env = TestEnv::memory();
    retried_jobs_come_back_to_their_group_only(&env.url, 100, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_delay_the_entry_is_a_dead_letter_with_every_attempt_counted() {
    let Some(redis) = TestEnv::redis() else {
        return;
    };
    for url in [TestEnv::memory().url, redis.url.clone()] {
        let policy = RetryPolicy::attempts(2)
            .backoff(Duration::ZERO, Duration::ZERO)
            .then_delayed([Duration::from_millis(100), Duration::from_millis(100)]);
        let bus = EventBus::builder()
            .service("doomed")
            .handler_with(
                HandlerOptions::new().name("never").retry(policy),
                |_: Job| async { Err::<(), _>(std::io::Error::other("always down")) },
            )
            .connect(&url)
            .await
            .unwrap();
        bus.publish(Job { n: 7 }).await.unwrap();
        let letters = || async { bus.dead_letters("retried_job", 10).await.unwrap() };
        let found = poll_until(LIMIT, letters, |found| !found.is_empty()).await;
        assert_eq!(found.len(), 1, "{url}");
        assert_eq!(
            found[0].attempts, 6,
            "{url}: 2 attempts on each of 3 deliveries"
        );
        assert!(found[0].error.contains("always down"), "{}", found[0].error);
        assert!(found[0].durable);
        let m = bus.metrics();
        let h = m.handler("never").unwrap();
        assert_eq!((h.deferred, h.failed, h.dead_lettered), (2, 1, 1), "{url}");
        bus.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_pubsub_handler_with_delayed_retries_is_refused() {
    let policy = RetryPolicy::attempts(2).then_delayed([Duration::from_secs(1)]);
    let err = EventBus::builder()
        .handler_with(HandlerOptions::new().retry(policy), |_: Note| async {})
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Config);
    assert!(err.to_string().contains("not durable"), "{err}");
}
