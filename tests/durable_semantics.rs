//! Durable delivery (`#[event(durable)]`): consumer groups, acknowledgements, redelivery,
//! claiming, dead letters, credit and shutdown. Every test body takes the URL of a "server"
//! shared by several buses (a `memory://NAME` hub here), so the same suite can run on others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use eventbus::{DurableOptions, Event, EventBus, HandlerOptions, RetryPolicy, StartFrom};
use eventbus_suite::{Seen, TestEnv, poll_until, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job_queued", durable)]
struct JobQueued {
    n: u64,
    poison: bool,
}

fn job(n: u64) -> JobQueued {
    JobQueued { n, poison: false }
}

const WAIT: Duration = Duration::from_secs(10);

// Every behaviour runs on the in-process transport and on a real redis-server.
eventbus_suite::on_every_transport!(
    instances_of_one_service_share_the_entries,
    every_service_gets_every_entry,
    a_new_group_starts_where_asked,
    a_failing_entry_is_dead_lettered_and_acknowledged,
    entries_of_a_dropped_instance_are_claimed,
    a_claimed_entry_past_max_deliveries_is_poison,
    a_slow_handler_slows_its_reading_and_loses_nothing,
    shutdown_leaves_unstarted_entries_pending,
    dedupe_skips_events_the_group_handled,
    dedupe_records_only_handled_events,
    group_state_shows_pending_and_lag,
    a_handler_sees_its_delivery,
);

/// Options of the handler `record`: the same name on every instance, so they share a group.
fn options() -> HandlerOptions {
    HandlerOptions::new().name("record")
}

/// A bus of `service` whose handler records each `n` it handles.
async fn recorder(url: &str, service: &str, seen: &Seen<u64>, options: HandlerOptions) -> EventBus {
    let seen = seen.clone();
    EventBus::builder()
        .service(service)
        .handler_with(options, move |e: JobQueued| {
            let seen = seen.clone();
            async move { seen.push(e.n) }
        })
        .connect(url)
        .await
        .unwrap()
}

async fn publisher(url: &str) -> EventBus {
    EventBus::builder()
        .service("publisher")
        .connect(url)
        .await
        .unwrap()
}

async fn publish_range(bus: &EventBus, range: std::ops::Range<u64>) {
    for n in range {
        let receipt = bus.publish(job(n)).await.unwrap();
        assert!(
            receipt.entry_id.is_some(),
            "a durable publish returns its entry id"
        );
    }
}

fn sorted(seen: &[&Seen<u64>]) -> Vec<u64> {
    let mut all: Vec<u64> = seen.iter().flat_map(|s| s.snapshot()).collect();
    all.sort_unstable();
    all
}

async fn instances_of_one_service_share_the_entries(env: TestEnv) {
    const N: u64 = 2000;
    let (a, b) = (Seen::new(), Seen::new());
    // Small queues: each instance reads a few entries at a time, so both get work.
    let bus_a = recorder(&env.url, "worker", &a, options().queue_capacity(4)).await;
    let bus_b = recorder(&env.url, "worker", &b, options().queue_capacity(4)).await;
    assert!(bus_a.capabilities().acks && bus_a.capabilities().replay);
    let publisher = publisher(&env.url).await;
    publish_range(&publisher, 0..N).await;
    assert!(wait_for(WAIT, || a.len() + b.len() >= N as usize).await);
    bus_a.shutdown().await.unwrap();
    bus_b.shutdown().await.unwrap();
    assert_eq!(sorted(&[&a, &b]), (0..N).collect::<Vec<_>>(), "each once");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both instances worked: {} and {}",
        a.len(),
        b.len()
    );
}

async fn every_service_gets_every_entry(env: TestEnv) {
    const N: u64 = 500;
    let (billing, shipping) = (Seen::new(), Seen::new());
    let bus_a = recorder(&env.url, "billing", &billing, options()).await;
    let bus_b = recorder(&env.url, "shipping", &shipping, options()).await;
    publish_range(&bus_a, 0..N).await;
    assert!(
        wait_for(WAIT, || billing.len() >= N as usize
            && shipping.len() >= N as usize)
        .await
    );
    bus_a.shutdown().await.unwrap();
    bus_b.shutdown().await.unwrap();
    let all: Vec<u64> = (0..N).collect();
    assert_eq!(billing.snapshot(), all, "billing: each once, in order");
    assert_eq!(shipping.snapshot(), all, "shipping: each once, in order");
}

async fn a_new_group_starts_where_asked(env: TestEnv) {
    let publisher = publisher(&env.url).await;
    publish_range(&publisher, 0..100).await;
    let (history, fresh) = (Seen::new(), Seen::new());
    let from_start = options().durable(DurableOptions::new().start_from(StartFrom::Beginning));
    let replaying = recorder(&env.url, "replay", &history, from_start).await;
    let newcomer = recorder(&env.url, "newcomer", &fresh, options()).await;
    assert!(wait_for(WAIT, || history.len() >= 100).await);
    publish_range(&publisher, 100..110).await;
    assert!(wait_for(WAIT, || history.len() >= 110 && fresh.len() >= 10).await);
    replaying.shutdown().await.unwrap();
    newcomer.shutdown().await.unwrap();
    assert_eq!(history.snapshot(), (0..110).collect::<Vec<_>>());
    assert_eq!(fresh.snapshot(), (100..110).collect::<Vec<_>>());
}

async fn a_failing_entry_is_dead_lettered_and_acknowledged(env: TestEnv) {
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Seen::new();
    let (attempts2, seen2) = (attempts.clone(), seen.clone());
    let retry =
        RetryPolicy::attempts(2).backoff(Duration::from_millis(1), Duration::from_millis(1));
    let claim_fast = DurableOptions::new().claim_idle(Duration::from_millis(10));
    let bus = EventBus::builder()
        .service("worker")
        .handler_with(
            options().retry(retry).durable(claim_fast.clone()),
            move |e: JobQueued| {
                let (attempts, seen) = (attempts2.clone(), seen2.clone());
                async move {
                    if e.poison {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        return Err(anyhow::anyhow!("cannot do job {}", e.n));
                    }
                    seen.push(e.n);
                    Ok(())
                }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    bus.publish(JobQueued { n: 0, poison: true }).await.unwrap();
    publish_range(&bus, 1..6).await;
    assert!(
        wait_for(WAIT, || seen.len() >= 5).await,
        "later events flow"
    );
    let letters = bus.dead_letters("job_queued", 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 2);
    assert_eq!(letters[0].error, "returned an error: cannot do job 0");
    bus.shutdown().await.unwrap();
    // Acknowledged: another instance that claims anything idle for 10 ms finds nothing of it.
    tokio::time::sleep(Duration::from_millis(20)).await; // the idle time, not synchronisation
    let other = recorder(&env.url, "worker", &seen, options().durable(claim_fast)).await;
    other.publish(job(6)).await.unwrap();
    assert!(wait_for(WAIT, || seen.len() >= 6).await);
    other.shutdown().await.unwrap();
    assert_eq!(seen.snapshot(), (1..7).collect::<Vec<_>>());
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "never delivered again");
}

/// Sets its flag when dropped: held by a handler, it says the handler is gone.
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A bus of "worker" whose handler takes `n` and never finishes it (records that it started);
/// `gone` is set once the handler, and so everything reading for it, is dropped.
async fn stuck_instance(url: &str, started: &Seen<u64>, gone: &Arc<AtomicBool>) -> EventBus {
    let never = Arc::new(Semaphore::new(0));
    let started = started.clone();
    let guard = Arc::new(Gone(gone.clone()));
    EventBus::builder()
        .service("worker")
        .handler_with(options(), move |e: JobQueued| {
            let (never, started, _guard) = (never.clone(), started.clone(), guard.clone());
            async move {
                started.push(e.n);
                let _permit = never.acquire().await;
            }
        })
        .connect(url)
        .await
        .unwrap()
}

/// Instance A takes entry 0 and is dropped without finishing; instance B (claiming after
/// 200 ms, with `durable` otherwise) joins before the drop. Entries published after A is gone
/// go to B first-hand.
async fn drop_a_stuck_instance(url: &str, durable: DurableOptions) -> (EventBus, Seen<u64>) {
    let (started, gone) = (Seen::new(), Arc::new(AtomicBool::new(false)));
    let a = stuck_instance(url, &started, &gone).await;
    a.publish(job(0)).await.unwrap();
    assert!(wait_for(WAIT, || started.snapshot() == [0]).await);
    let seen = Seen::new();
    let claim = durable.claim_idle(Duration::from_millis(200));
    let b = recorder(url, "worker", &seen, options().durable(claim)).await;
    drop(a);
    assert!(wait_for(WAIT, || gone.load(Ordering::SeqCst)).await);
    publish_range(&b, 1..6).await;
    (b, seen)
}

async fn entries_of_a_dropped_instance_are_claimed(env: TestEnv) {
    let (b, seen) = drop_a_stuck_instance(&env.url, DurableOptions::new()).await;
    assert!(wait_for(WAIT, || seen.len() >= 6).await);
    let mut handled = seen.snapshot();
    handled.sort_unstable();
    assert_eq!(handled, (0..6).collect::<Vec<_>>());
    assert!(b.dead_letters("job_queued", 10).await.unwrap().is_empty());
    let m = b.metrics();
    let record = m.handler("record").unwrap();
    assert_eq!(
        (record.claimed, record.redelivered),
        (1, 1),
        "entry 0 was claimed from A and delivered a second time: {record:?}"
    );
    b.shutdown().await.unwrap();
}

async fn a_claimed_entry_past_max_deliveries_is_poison(env: TestEnv) {
    let once = DurableOptions::new().max_deliveries(1);
    let (b, seen) = drop_a_stuck_instance(&env.url, once).await;
    let letters = poll_until(
        WAIT,
        || async { b.dead_letters("job_queued", 10).await.unwrap() },
        |letters| !letters.is_empty(),
    )
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 2, "delivered to A, then claimed by B");
    assert!(letters[0].error.starts_with("poison: delivered 2 times"));
    // Entries published after A was gone reached B first-hand: handled, not poison.
    assert!(wait_for(WAIT, || seen.len() >= 5).await);
    assert_eq!(seen.snapshot(), (1..6).collect::<Vec<_>>());
    b.shutdown().await.unwrap();
}

async fn a_slow_handler_slows_its_reading_and_loses_nothing(env: TestEnv) {
    const N: u64 = 5000;
    const CAPACITY: usize = 16;
    let gate = Arc::new(Semaphore::new(0));
    let (slow, fast) = (Seen::new(), Seen::new());
    let (gate2, slow2, fast2) = (gate.clone(), slow.clone(), fast.clone());
    let bus = EventBus::builder()
        .service("worker")
        .handler_with(
            HandlerOptions::new().name("slow").queue_capacity(CAPACITY),
            move |e: JobQueued| {
                let (gate, slow) = (gate2.clone(), slow2.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    slow.push(e.n);
                }
            },
        )
        .handler_with(HandlerOptions::new().name("fast"), move |e: JobQueued| {
            let fast = fast2.clone();
            async move { fast.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    publish_range(&bus, 0..N).await;
    assert!(
        wait_for(WAIT, || fast.len() >= N as usize).await,
        "not held up"
    );
    let m = bus.metrics();
    let slow_m = m.handler("slow").unwrap();
    assert_eq!(slow.len(), 0);
    assert!(
        slow_m.received <= CAPACITY as u64 + 1,
        "read only what it has room for: {}",
        slow_m.received
    );
    gate.add_permits(N as usize);
    assert!(wait_for(WAIT, || slow.len() >= N as usize).await);
    let m = bus.metrics();
    assert_eq!(m.handler("slow").unwrap().dropped, 0);
    assert_eq!(m.handler("fast").unwrap().dropped, 0);
    assert_eq!(slow.snapshot(), (0..N).collect::<Vec<_>>());
    assert_eq!(fast.snapshot(), (0..N).collect::<Vec<_>>());
    bus.shutdown().await.unwrap();
}

async fn shutdown_leaves_unstarted_entries_pending(env: TestEnv) {
    let (started, gone) = (Seen::new(), Arc::new(AtomicBool::new(false)));
    let never = Arc::new(Semaphore::new(0));
    let started2 = started.clone();
    let guard = Arc::new(Gone(gone.clone()));
    let a = EventBus::builder()
        .service("worker")
        .shutdown_timeout(Duration::from_millis(100))
        .handler_with(options(), move |e: JobQueued| {
            let (never, started, _g) = (never.clone(), started2.clone(), guard.clone());
            async move {
                started.push(e.n);
                let _permit = never.acquire().await;
            }
        })
        .connect(&env.url)
        .await
        .unwrap();
    publish_range(&a, 0..5).await;
    let queued = || a.metrics().handler("record").map(|h| h.queue_depth);
    assert!(wait_for(WAIT, || started.len() == 1 && queued() == Some(4)).await);
    let report = a.shutdown().await.unwrap_err().report;
    assert_eq!(report.left_pending, 4, "{report:?}");
    assert_eq!(report.unprocessed, 1, "the run cut short: {report:?}");
    let seen = Seen::new();
    let claim = DurableOptions::new().claim_idle(Duration::from_millis(200));
    let b = recorder(&env.url, "worker", &seen, options().durable(claim)).await;
    assert!(wait_for(WAIT, || seen.len() >= 5).await);
    let handled: BTreeSet<u64> = seen.snapshot().into_iter().collect();
    assert_eq!(handled, (0..5).collect(), "the next instance handles them");
    assert_eq!(seen.len(), 5);
    b.shutdown().await.unwrap();
    drop(a);
    assert!(wait_for(WAIT, || gone.load(Ordering::SeqCst)).await);
}

/// A bus of "worker" whose handler `record` de-duplicates over a minute, records each `n` it
/// runs on, and fails the runs whose `poison` is set.
async fn deduplicating(url: &str, seen: &Seen<u64>) -> EventBus {
    let seen = seen.clone();
    EventBus::builder()
        .service("worker")
        .handler_with(
            options().dedupe(Duration::from_secs(60)),
            move |e: JobQueued| {
                let seen = seen.clone();
                async move {
                    seen.push(e.n);
                    if e.poison {
                        return Err(anyhow::anyhow!("refused {}", e.n));
                    }
                    Ok(())
                }
            },
        )
        .connect(url)
        .await
        .unwrap()
}

async fn dedupe_skips_events_the_group_handled(env: TestEnv) {
    let seen = Seen::new();
    let bus = deduplicating(&env.url, &seen).await;
    // A publisher that retried: the same envelope (same id) appended twice, then another.
    let twice = eventbus::Envelope::new(job(1));
    bus.publish_envelope(twice.clone()).await.unwrap();
    bus.publish_envelope(twice).await.unwrap();
    bus.publish(job(2)).await.unwrap();
    let metrics = || bus.metrics().handler("record").cloned().unwrap();
    assert!(wait_for(WAIT, || seen.len() >= 2 && metrics().duplicates >= 1).await);
    bus.shutdown().await.unwrap();
    assert_eq!(seen.snapshot(), vec![1, 2], "the second copy was skipped");
    let m = metrics();
    assert_eq!((m.handled, m.duplicates, m.failed), (2, 1, 0), "{m:?}");
}

async fn dedupe_records_only_handled_events(env: TestEnv) {
    let seen = Seen::new();
    let bus = deduplicating(&env.url, &seen).await;
    // The first copy fails (dead-lettered): not recorded, so the second copy runs.
    let mut first = eventbus::Envelope::new(JobQueued { n: 7, poison: true });
    bus.publish_envelope(first.clone()).await.unwrap();
    *first.data_mut() = job(7);
    bus.publish_envelope(first).await.unwrap();
    let metrics = || bus.metrics().handler("record").cloned().unwrap();
    assert!(wait_for(WAIT, || metrics().handled >= 1).await);
    bus.shutdown().await.unwrap();
    assert_eq!(seen.snapshot(), vec![7, 7]);
    let m = metrics();
    assert_eq!((m.handled, m.failed, m.duplicates), (1, 1, 0), "{m:?}");
}

async fn group_state_shows_pending_and_lag(env: TestEnv) {
    const N: u64 = 200;
    let gate = Arc::new(Semaphore::new(0));
    let gate2 = gate.clone();
    let bus = EventBus::builder()
        .service("worker")
        .handler_with(options().queue_capacity(8), move |_: JobQueued| {
            let gate = gate2.clone();
            async move { gate.acquire().await.unwrap().forget() }
        })
        .connect(&env.url)
        .await
        .unwrap();
    publish_range(&bus, 0..N).await;
    // The reader takes what fits in the handler's queue, then waits for room.
    let groups = poll_until(
        WAIT,
        || async { bus.groups().await.unwrap() },
        |groups| groups.first().is_some_and(|g| g.pending >= 1),
    )
    .await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    let g = &groups[0];
    assert_eq!(
        (g.group.as_str(), g.stream.as_str()),
        ("worker:record", "events:job_queued")
    );
    assert_eq!(g.consumers, 1);
    assert!(
        g.pending >= 1 && g.pending <= 9,
        "read only what fits: {g:?}"
    );
    assert_eq!(
        g.lag,
        Some(N - g.pending),
        "the rest waits in the stream: {g:?}"
    );
    // The metrics hold the same figures, read about once a second.
    let polled = || {
        bus.metrics()
            .handler("record")
            .and_then(|h| h.group.clone())
    };
    assert!(
        wait_for(WAIT, || polled()
            .is_some_and(|p| p.lag.is_some_and(|l| l > 0)))
        .await
    );
    gate.add_permits(N as usize);
    let drained = || polled().is_some_and(|p| p.lag == Some(0) && p.pending == 0);
    assert!(wait_for(WAIT, drained).await, "{:?}", polled());
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn dedupe_on_a_pubsub_handler_is_refused() {
    #[derive(Debug, Serialize, Deserialize, Event)]
    #[event(name = "tick")]
    struct Tick {}
    let err = EventBus::builder()
        .handler_with(
            HandlerOptions::new()
                .name("ticker")
                .dedupe(Duration::from_secs(1)),
            |_: Tick| async {},
        )
        .connect("memory://")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), eventbus::ConnectErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("handler `ticker`") && text.contains("durable event types"),
        "{text}"
    );
}

async fn a_handler_sees_its_delivery(env: TestEnv) {
    let seen: Seen<(u64, u32, u32, bool, bool)> = Seen::new();
    let seen2 = seen.clone();
    let bus = EventBus::builder()
        .service("worker")
        .handler_with(
            options().retry(RetryPolicy::attempts(2).backoff(Duration::ZERO, Duration::ZERO)),
            move |e: JobQueued, d: eventbus::DeliveryInfo| {
                let seen = seen2.clone();
                async move {
                    seen.push((
                        e.n,
                        d.attempt,
                        d.deliveries,
                        d.entry_id.is_some(),
                        d.claimed,
                    ));
                    anyhow::ensure!(d.attempt > 1 || e.n != 1, "first attempt of 1 fails");
                    Ok(())
                }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    publish_range(&bus, 0..2).await;
    assert!(
        wait_for(WAIT, || seen.len() == 3).await,
        "{:?}",
        seen.snapshot()
    );
    assert_eq!(
        seen.snapshot(),
        vec![
            (0, 1, 1, true, false),
            (1, 1, 1, true, false),
            (1, 2, 1, true, false)
        ],
        "(n, attempt, deliveries, has entry id, claimed)"
    );
    bus.shutdown().await.unwrap();
}
