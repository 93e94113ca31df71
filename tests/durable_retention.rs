//! Stream retention on a real redis-server: trimming by length and by age, and entries
//! trimmed while pending are reported and acknowledged, never a crash or a stuck group.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventbus::redis::{RedisOptions, StreamRetention};
use eventbus::{DurableOptions, Event, EventBus, Failure, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "reading_taken", durable)]
struct ReadingTaken {
    n: u64,
}

const STREAM: &str = "events:reading_taken";
const WAIT: Duration = Duration::from_secs(10);

async fn publisher(server: &RedisServer, retention: StreamRetention) -> EventBus {
    EventBus::builder()
        .redis_options(RedisOptions::new().stream_retention(retention))
        .connect(&server.url())
        .await
        .unwrap()
}

fn xlen(server: &RedisServer) -> u64 {
    server.cli(&["XLEN", STREAM]).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_trimmed_by_length() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let bus = publisher(&server, StreamRetention::MaxLen(100)).await;
    for n in 0..1000 {
        bus.publish(ReadingTaken { n }).await.unwrap();
    }
    let len = xlen(&server);
    // `MAXLEN ~` removes whole nodes of 100 entries: between 100 and 200 remain.
    assert!((100..200).contains(&len), "XLEN {len}");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_trimmed_by_age() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let bus = publisher(&server, StreamRetention::MaxAge(Duration::from_millis(300))).await;
    for n in 0..200 {
        bus.publish(ReadingTaken { n }).await.unwrap();
    }
    assert_eq!(xlen(&server), 200, "young entries stay");
    // The age is the condition under test: wait until the newest of the first 200 entries
    // (its id is its time in ms) is older than 300 ms, with a margin.
    let newest = server.cli(&["XREVRANGE", STREAM, "+", "-", "COUNT", "1"]);
    let newest_ms: u128 = newest
        .split(|c: char| !c.is_ascii_digit())
        .find(|t| t.len() >= 13)
        .and_then(|t| t.parse().ok())
        .expect("an entry id");
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert!(wait_for(WAIT, || now_ms() > newest_ms + 350).await);
    for n in 200..300 {
        bus.publish(ReadingTaken { n }).await.unwrap();
    }
    let first = server.cli(&["XRANGE", STREAM, "-", "+", "COUNT", "1"]);
    assert!(
        xlen(&server) <= 200,
        "the old nodes went: XLEN {}",
        xlen(&server)
    );
    assert!(first.contains("\"n\":"), "{first}");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_that_keeps_nothing_is_refused() {
    for retention in [
        StreamRetention::MaxLen(0),
        StreamRetention::MaxAge(Duration::ZERO),
    ] {
        let err = EventBus::builder()
            .redis_options(RedisOptions::new().stream_retention(retention))
            .connect("redis://127.0.0.1:1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), eventbus::ConnectErrorKind::Config, "{err}");
        assert!(err.to_string().contains("StreamRetention::"), "{err}");
    }
}

/// A bus of "meter" whose handler `store` takes entries and never finishes them; `gone` is
/// set once the handler is dropped.
async fn stuck(url: &str, started: &Seen<u64>, gone: &Arc<AtomicBool>) -> EventBus {
    struct Gone(Arc<AtomicBool>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let never = Arc::new(Semaphore::new(0));
    let (started, guard) = (started.clone(), Arc::new(Gone(gone.clone())));
    EventBus::builder()
        .service("meter")
        .handler_with(
            HandlerOptions::new().name("store"),
            move |e: ReadingTaken| {
                let (never, started, _g) = (never.clone(), started.clone(), guard.clone());
                async move {
                    started.push(e.n);
                    let _ = never.acquire().await;
                }
            },
        )
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_trimmed_while_pending_on_a_dead_consumer_are_reported() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let (started, gone) = (Seen::new(), Arc::new(AtomicBool::new(false)));
    let a = stuck(&server.url(), &started, &gone).await;
    for n in 0..3 {
        a.publish(ReadingTaken { n }).await.unwrap();
    }
    assert!(wait_for(WAIT, || started.len() == 1).await);
    drop(a);
    assert!(wait_for(WAIT, || gone.load(Ordering::SeqCst)).await);
    assert_eq!(server.cli(&["XTRIM", STREAM, "MAXLEN", "0"]).trim(), "3");

    let trimmed = Seen::new();
    let reported = trimmed.clone();
    let seen = Seen::new();
    let seen2 = seen.clone();
    let b = EventBus::builder()
        .service("meter")
        .on_error(move |f| {
            if let Failure::Trimmed { handler, entry_id } = f {
                reported.push(format!("{handler} {entry_id}"));
            }
        })
        .handler_with(
            HandlerOptions::new()
                .name("store")
                .durable(DurableOptions::new().claim_idle(Duration::from_millis(100))),
            move |e: ReadingTaken| {
                let seen = seen2.clone();
                async move { seen.push(e.n) }
            },
        )
        .connect(&server.url())
        .await
        .unwrap();
    assert!(
        wait_for(WAIT, || trimmed.len() == 3).await,
        "{:?}",
        trimmed.snapshot()
    );
    assert!(trimmed.snapshot().iter().all(|t| t.starts_with("store ")));
    assert_eq!(b.metrics().handler("store").unwrap().trimmed, 3);
    let group = b.groups().await.unwrap();
    assert_eq!(group[0].pending, 0, "nothing stays stuck: {group:?}");
    // The group goes on with new entries.
    b.publish(ReadingTaken { n: 9 }).await.unwrap();
    assert!(wait_for(WAIT, || seen.snapshot() == [9]).await);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_entries_trimmed_while_pending_are_acknowledged_and_reported() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let bus = EventBus::builder()
        .service("meter")
        .shutdown_timeout(Duration::from_millis(200))
        .connect(&server.url())
        .await
        .unwrap();
    // A handler that takes an entry, never finishes it, and is removed: what it read stays
    // pending on this bus's consumer.
    let gate = Arc::new(Semaphore::new(0));
    let started = Seen::new();
    let (gate2, started2) = (gate.clone(), started.clone());
    let sub = bus
        .subscribe_with(
            HandlerOptions::new().name("store").queue_capacity(4),
            move |e: ReadingTaken| {
                let (gate, started) = (gate2.clone(), started2.clone());
                async move {
                    started.push(e.n);
                    let _ = gate.acquire().await;
                }
            },
        )
        .await
        .unwrap();
    for n in 0..3 {
        bus.publish(ReadingTaken { n }).await.unwrap();
    }
    assert!(wait_for(WAIT, || started.len() == 1).await);
    sub.unsubscribe().await.unwrap();
    server.cli(&["XTRIM", STREAM, "MAXLEN", "0"]);
    let pending = || server.cli(&["XPENDING", STREAM, "meter:store"]);
    assert!(pending().starts_with('3'), "{}", pending());

    // The same handler again: it re-reads its consumer's pending entries first.
    let seen = Seen::new();
    let seen2 = seen.clone();
    let _sub = bus
        .subscribe_with(
            HandlerOptions::new().name("store"),
            move |e: ReadingTaken| {
                let seen = seen2.clone();
                async move { seen.push(e.n) }
            },
        )
        .await
        .unwrap();
    let metrics = || bus.metrics().handler("store").map(|h| h.trimmed);
    assert!(
        wait_for(WAIT, || metrics() == Some(3)).await,
        "{:?}",
        metrics()
    );
    assert!(
        wait_for(WAIT, || pending().starts_with('0')).await,
        "{}",
        pending()
    );
    assert!(
        seen.is_empty(),
        "nothing to hand over: {:?}",
        seen.snapshot()
    );
    bus.shutdown().await.unwrap();
    drop(gate);
}
