//! Resharding while publishing: the slot of a subscribed channel moves to another primary
//! (`CLUSTER SETSLOT ... IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT ... NODE`, as
//! `redis-cli --cluster reshard` does it) while a publisher publishes without pause. The old
//! owner drops the sharded subscription; the bus reports the gap (`Disconnected`, then
//! `Moved` naming both nodes and `Resubscribed`), subscribes again on the new owner, and every
//! event published from then on is delivered. A raw channel on the same slot, published with
//! classic `PUBLISH`, and a pattern on that slot matching it, move with it and are never
//! delivered twice.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eventbus::{ConnectionEvent, EventBus, Message, Topic};
use eventbus_suite::cluster::RedisCluster;
use eventbus_suite::{Ping, Seen, bounded, fast, wait_for};
use tokio::sync::broadcast;

/// How long moving the slot may take.
const MOVE: Duration = Duration::from_secs(20);
/// How long after the move the bus may take to report the gap and deliver again.
const RESUME: Duration = Duration::from_secs(10);

const CHANNEL: &str = "events:ping";
/// A raw channel whose hash tag puts it on `CHANNEL`'s slot.
const CLASSIC: &str = "{events:ping}.classic";
/// A pattern matching `CLASSIC`, whose hash tag puts it on the same slot.
const PATTERN: &str = "{events:ping}.*";

/// A bus whose handlers record the `n` of every `Ping`, and of every classic raw message (on
/// its channel and through a pattern).
async fn subscriber(
    url: &str,
    seen: &Seen<u64>,
    classic: &Seen<u64>,
    matched: &Seen<u64>,
) -> EventBus {
    let (seen, classic, matched) = (seen.clone(), classic.clone(), matched.clone());
    let bus = EventBus::builder()
        .redis_options(fast())
        .handler(move |e: Ping| {
            let seen = seen.clone();
            async move { seen.push(e.n) }
        })
        .handler_on(Topic::channel(CLASSIC), move |m: Message| {
            let classic = classic.clone();
            async move {
                let text = String::from_utf8_lossy(&m.payload).into_owned();
                classic.push(text.parse().expect("a number"));
            }
        })
        .handler_on(Topic::pattern(PATTERN), move |m: Message| {
            let matched = matched.clone();
            async move {
                let text = String::from_utf8_lossy(&m.payload).into_owned();
                matched.push(text.parse().expect("a number"));
            }
        })
        .connect(url)
        .await
        .expect("connect to the cluster");
    bus.ready(Duration::from_secs(10)).await.unwrap();
    bus
}

/// What the publisher task shares: the next `n`, those whose publish returned `Ok`, and the
/// stop flag.
#[derive(Clone, Default)]
struct Publishing {
    next: Arc<AtomicU64>,
    sent: Seen<u64>,
    stop: Arc<AtomicBool>,
}

/// Publishes `Ping`s with growing `n`, one every 5 ms, each also as a classic raw message,
/// until told to stop. Failed publishes (while the slot moves) are left out of `sent`.
async fn publish_continuously(bus: EventBus, p: Publishing) {
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    while !p.stop.load(Ordering::Acquire) {
        pace.tick().await;
        let n = p.next.fetch_add(1, Ordering::AcqRel);
        if bus.publish(Ping { n }).await.is_ok() {
            p.sent.push(n);
        }
        let _ = bus.publish_raw(CLASSIC, n.to_string()).await;
    }
}

/// The connection events up to `Resubscribed`, which must come within `RESUME`.
async fn gap_reported(events: &mut broadcast::Receiver<ConnectionEvent>) -> Vec<ConnectionEvent> {
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(RESUME, async {
        loop {
            match events.recv().await {
                Ok(event @ ConnectionEvent::Resubscribed { .. }) => {
                    seen.push(event);
                    return;
                }
                Ok(event) => seen.push(event),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the bus closed"),
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no Resubscribed within {RESUME:?}: {seen:?}"
    );
    seen
}

/// Asserts the subscriber reported losing the sharded subscription on `from`, the channel's
/// move to `to`, and the resubscription, in that order.
fn assert_gap_named(events: &[ConnectionEvent], from: u16, to: u16) {
    let (from, to) = (format!("127.0.0.1:{from}"), format!("127.0.0.1:{to}"));
    let dropped = events.iter().position(|e| {
        matches!(e, ConnectionEvent::Disconnected { role: "subscriber", cause }
            if cause.contains(&from) && cause.contains(CHANNEL))
    });
    let moved = events.iter().position(|e| {
        matches!(e, ConnectionEvent::Moved { channel, from: f, to: t, .. }
            if channel == CHANNEL && *f == from && *t == to)
    });
    let (Some(dropped), Some(moved)) = (dropped, moved) else {
        panic!("the gap does not name {from} and {to}: {events:?}");
    };
    assert!(dropped < moved, "Moved before Disconnected: {events:?}");
    assert!(
        matches!(events.last(), Some(ConnectionEvent::Resubscribed { topics }) if *topics >= 2)
    );
}

/// Each classic message delivered at most once, and every one in `resumed..last` delivered.
fn assert_classic_once(classic: &[u64], resumed: u64, last: u64) {
    let mut counts = std::collections::BTreeMap::new();
    for n in classic {
        *counts.entry(*n).or_insert(0u32) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "classic messages delivered twice: {twice:?}"
    );
    let missing: Vec<u64> = (resumed..last)
        .filter(|n| !counts.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "classic messages lost after the gap: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_slot_is_followed_and_delivery_resumes() {
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    let url = cluster.url();
    bounded(async move {
        let (seen, classic, matched) = (Seen::new(), Seen::new(), Seen::new());
        let sub = subscriber(&url, &seen, &classic, &matched).await;
        let mut events = sub.connection_events();
        let publisher = EventBus::builder()
            .redis_options(fast())
            .connect(&url)
            .await
            .unwrap();
        let p = Publishing::default();
        let task = tokio::spawn(publish_continuously(publisher.clone(), p.clone()));
        assert!(
            wait_for(RESUME, || seen.len() >= 20).await,
            "no delivery before the move"
        );

        let from = cluster.owner_of(CHANNEL);
        let to = *cluster
            .primary_ports()
            .iter()
            .find(|port| **port != from)
            .expect("another primary");
        let started = p.next.load(Ordering::Acquire);
        let cluster = tokio::task::spawn_blocking(move || {
            cluster.move_slot_of(CHANNEL, to, MOVE);
            cluster
        })
        .await
        .unwrap();
        assert_gap_named(&gap_reported(&mut events).await, from, to);
        let resumed = p.next.load(Ordering::Acquire);
        let target = resumed + 100;
        assert!(
            wait_for(RESUME, || seen.snapshot().iter().any(|n| *n >= target)).await,
            "no delivery on the new owner"
        );
        p.stop.store(true, Ordering::Release);
        task.await.unwrap();

        let sent_after: Vec<u64> = p
            .sent
            .snapshot()
            .into_iter()
            .filter(|n| *n >= resumed)
            .collect();
        let all_there = wait_for(RESUME, || {
            let got = seen.snapshot();
            sent_after.iter().all(|n| got.contains(n))
        })
        .await;
        let got = seen.snapshot();
        let missing: Vec<u64> = sent_after
            .iter()
            .filter(|n| !got.contains(n))
            .copied()
            .collect();
        assert!(
            all_there,
            "published after the gap but not delivered: {missing:?}"
        );
        let lost = p
            .sent
            .snapshot()
            .iter()
            .filter(|n| !got.contains(n))
            .count();
        eprintln!(
            "moved from {from} to {to} while publishing from {started}; {} delivered after the \
             gap, {lost} lost in it",
            sent_after.len()
        );
        let last = p.next.load(Ordering::Acquire);
        let classic_done = wait_for(RESUME, || classic.snapshot().contains(&(last - 1))).await;
        assert!(classic_done, "the last classic messages never arrived");
        assert_classic_once(&classic.snapshot(), resumed, last);
        let matched_done = wait_for(RESUME, || matched.snapshot().contains(&(last - 1))).await;
        assert!(matched_done, "the last pattern messages never arrived");
        assert_classic_once(&matched.snapshot(), resumed, last);
        assert_eq!(cluster.owner_of(CHANNEL), to);
        assert!(cluster.node(to).command_calls("ssubscribe") >= 1);
        sub.shutdown().await.unwrap();
        publisher.shutdown().await.unwrap();
    })
    .await;
}
