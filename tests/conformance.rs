//! The transport conformance suite: one list of behaviours every transport must show, the
//! transport's [`Capabilities`] deciding which apply (patterns, acknowledgements,
//! reconnects). A transport is done when it passes this list.
//!
//! To add a transport: give `TestEnv` a constructor for it (a URL several buses share and,
//! for a server, the process to restart), then add one line to `on_every_transport!` below.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventbus::transport::Capabilities;
use eventbus::{
    ConnectionEvent, Event, EventBus, Failure, HandlerOptions, Message, PublishErrorKind, Topic,
};
use eventbus_suite::{Seen, TestEnv, wait_for};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "conf_note", channel = "conf:notes")]
struct Note {
    n: u64,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "conf_alert", channel = "conf:user:{user}:alerts")]
struct Alert {
    user: u64,
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "conf_task", durable)]
struct Task {
    n: u64,
}

fn note(n: u64) -> Note {
    Note {
        n,
        text: format!("note {n}"),
    }
}

/// A bus on `env` whose handler records the `n` of every `Note`.
async fn recorder(env: &TestEnv, seen: &Seen<u64>) -> EventBus {
    let seen = seen.clone();
    let bus = EventBus::builder()
        .handler(move |e: Note| {
            let seen = seen.clone();
            async move { seen.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    bus
}

async fn capabilities(env: &TestEnv) -> Capabilities {
    let bus = EventBus::builder().connect(&env.url).await.unwrap();
    let caps = bus.capabilities();
    bus.shutdown().await.unwrap();
    caps
}

/// Events from one bus reach a handler on another, each once, intact and in order.
async fn delivery_once_in_order(env: TestEnv) {
    let seen = Seen::new();
    let sub = recorder(&env, &seen).await;
    let publisher = EventBus::builder().connect(&env.url).await.unwrap();
    for n in 0..500 {
        publisher.publish(note(n)).await.unwrap();
    }
    assert!(wait_for(WAIT, || seen.len() == 500).await, "{}", seen.len());
    assert_eq!(seen.snapshot(), (0..500).collect::<Vec<_>>());
    sub.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

/// Two subscribed buses both get every event; the receipt counts them.
async fn fan_out_to_every_subscriber(env: TestEnv) {
    let (a, b) = (Seen::new(), Seen::new());
    let (bus_a, bus_b) = (recorder(&env, &a).await, recorder(&env, &b).await);
    let receipt = bus_a.publish(note(1)).await.unwrap();
    assert_eq!(receipt.receivers, 2);
    assert!(wait_for(WAIT, || a.len() == 1 && b.len() == 1).await);
    bus_a.shutdown().await.unwrap();
    bus_b.shutdown().await.unwrap();
}

/// A pattern handler gets the events of matching channels only (where patterns are offered;
/// raw payloads are classic publishes, which reach patterns on a Redis Cluster too).
async fn patterns_match_only_their_channels(env: TestEnv) {
    if !capabilities(&env).await.patterns {
        return;
    }
    let seen = Seen::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .handler_on(Topic::pattern("conf:*"), move |m: Message| {
            let s = s.clone();
            async move { s.push(m.channel.to_string()) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    bus.publish_raw("conf:a", "1").await.unwrap();
    bus.publish_raw("other:b", "2").await.unwrap();
    bus.publish_raw("conf:c", "3").await.unwrap();
    assert!(wait_for(WAIT, || seen.len() == 2).await);
    assert_eq!(
        seen.snapshot(),
        vec!["conf:a".to_owned(), "conf:c".to_owned()]
    );
    bus.shutdown().await.unwrap();
}

/// Keyed events reach the handler of their type (a pattern) and the handler of one key (a
/// channel), and nothing else; events with a fixed channel on the same bus still arrive.
async fn keyed_events_reach_their_handlers(env: TestEnv) {
    if !capabilities(&env).await.patterns {
        return;
    }
    let (all, one, notes) = (Seen::new(), Seen::new(), Seen::new());
    let bus = keyed_recorder(&env, &all, &one, &notes).await;
    for user in [1, 7, 9] {
        let receipt = bus.publish(Alert { user, n: user * 10 }).await.unwrap();
        assert_eq!(receipt.channel, format!("conf:user:{user}:alerts"));
    }
    bus.publish(note(5)).await.unwrap();
    assert!(
        wait_for(WAIT, || all.len() == 3
            && one.len() == 1
            && notes.len() == 1)
        .await,
        "all {:?}, one {:?}, notes {:?}",
        all.snapshot(),
        one.snapshot(),
        notes.snapshot()
    );
    let mut got = all.snapshot();
    got.sort_unstable();
    assert_eq!(got, vec![10, 70, 90]);
    assert_eq!(one.snapshot(), vec![70]);
    assert_eq!(notes.snapshot(), vec![5]);
    bus.shutdown().await.unwrap();
}

/// A bus with a handler for every `Alert`, one for user 7's, and one for `Note`s.
async fn keyed_recorder(
    env: &TestEnv,
    all: &Seen<u64>,
    one: &Seen<u64>,
    notes: &Seen<u64>,
) -> EventBus {
    let (a, o, n) = (all.clone(), one.clone(), notes.clone());
    let bus = EventBus::builder()
        .handler(move |e: Alert| {
            let a = a.clone();
            async move { a.push(e.n) }
        })
        .handler_on(Topic::keyed::<Alert>(&[&7]), move |e: Alert| {
            let o = o.clone();
            async move { o.push(e.n) }
        })
        .handler(move |e: Note| {
            let n = n.clone();
            async move { n.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    bus
}

/// Raw payloads reach a `Message` handler byte for byte, published classic or sharded, each
/// once.
async fn raw_channels_carry_bytes(env: TestEnv) {
    let seen = Seen::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .handler_on(Topic::channel("conf:raw"), move |m: Message| {
            let s = s.clone();
            async move { s.push(m.payload.to_vec()) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    let bytes = vec![0u8, 255, 10, 13, b'x'];
    assert_eq!(bus.publish_raw("conf:raw", bytes.clone()).await.unwrap(), 1);
    let sharded = b"sharded".to_vec();
    let receivers = bus.publish_raw_sharded("conf:raw", sharded.clone());
    assert_eq!(receivers.await.unwrap(), 1);
    assert!(wait_for(WAIT, || seen.len() == 2).await);
    bus.publish_raw("conf:raw", "last").await.unwrap();
    assert!(wait_for(WAIT, || seen.len() == 3).await);
    assert_eq!(seen.snapshot(), vec![bytes, sharded, b"last".to_vec()]);
    bus.shutdown().await.unwrap();
}

/// A failing, a panicking and a hanging handler leave another handler of the type alone,
/// and later events still reach them.
async fn failures_are_isolated(env: TestEnv) {
    let seen = Seen::new();
    let runs = Arc::new(AtomicU64::new(0));
    let (s, r1, r2, r3) = (seen.clone(), runs.clone(), runs.clone(), runs.clone());
    let fast = HandlerOptions::new().timeout(Duration::from_millis(100));
    let bus = EventBus::builder()
        .on_error(|_: &Failure| {})
        .handler(move |e: Note| {
            let s = s.clone();
            async move { s.push(e.n) }
        })
        .handler_with(
            move |_: Note| {
                r1.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), _>(std::io::Error::other("fails")) }
            },
            fast.clone().name("failing"),
        )
        .handler_with(
            move |_: Note| {
                let r2 = r2.clone();
                r2.fetch_add(1, Ordering::SeqCst);
                async move {
                    if r2.load(Ordering::SeqCst) > 0 {
                        panic!("panics");
                    }
                }
            },
            fast.clone().name("panicking"),
        )
        .handler_with(
            move |_: Note| {
                r3.fetch_add(1, Ordering::SeqCst);
                async move { tokio::time::sleep(Duration::from_secs(3600)).await }
            },
            fast.name("hanging"),
        )
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    for n in 0..3 {
        bus.publish(note(n)).await.unwrap();
    }
    let counts = || {
        let m = bus.metrics();
        let h = |name: &str| m.handler(name).unwrap().clone();
        (
            h("failing").failed,
            h("panicking").panicked,
            h("hanging").timed_out,
        )
    };
    assert!(
        wait_for(WAIT, || seen.len() == 3 && counts() == (3, 3, 3)).await,
        "{:?}",
        counts()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 9);
    bus.shutdown().await.unwrap();
}

/// After `unsubscribe().await`, nothing more reaches the handler.
async fn unsubscribe_stops_delivery(env: TestEnv) {
    let bus = EventBus::builder().connect(&env.url).await.unwrap();
    let seen = Seen::new();
    let s = seen.clone();
    let sub = bus
        .subscribe(move |e: Note| {
            let s = s.clone();
            async move { s.push(e.n) }
        })
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    bus.publish(note(1)).await.unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    sub.unsubscribe().await.unwrap();
    let receipt = bus.publish(note(2)).await.unwrap();
    assert_eq!(receipt.receivers, 0);
    bus.shutdown().await.unwrap();
    assert_eq!(seen.snapshot(), vec![1]);
}

/// Bad input is reported and dropped; the next valid event arrives.
async fn bad_input_is_reported_and_skipped(env: TestEnv) {
    let seen = Seen::new();
    let failures = Seen::new();
    let (s, f) = (seen.clone(), failures.clone());
    let bus = EventBus::builder()
        .on_error(move |e: &Failure| f.push(matches!(e, Failure::Decode(_))))
        .handler(move |e: Note| {
            let s = s.clone();
            async move { s.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    bus.publish_raw(Note::CHANNEL, "not json").await.unwrap();
    bus.publish_raw(Note::CHANNEL, r#"{"type":"conf_note","data":{"n":"x"}}"#)
        .await
        .unwrap();
    bus.publish(note(7)).await.unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1 && failures.len() == 2).await);
    assert_eq!(failures.snapshot(), vec![true, true]);
    assert_eq!(seen.snapshot(), vec![7]);
    bus.shutdown().await.unwrap();
}

/// Shutdown drains what was queued; publishing afterwards fails with `Closed`.
async fn shutdown_drains_then_refuses(env: TestEnv) {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let bus = EventBus::builder()
        .handler(move |_: Note| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    for n in 0..50 {
        bus.publish(note(n)).await.unwrap();
    }
    assert!(wait_for(WAIT, || bus.metrics().handlers[0].received == 50).await);
    let report = bus.shutdown().await.unwrap();
    assert_eq!((done.load(Ordering::SeqCst), report.unprocessed), (50, 0));
    let err = bus.publish(note(0)).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Closed);
}

/// A restarted server (behind Sentinel or in a cluster: a killed primary, replaced by its
/// replica): the bus reconnects, reports the gap, and delivers again.
async fn reconnects_after_a_server_restart(mut env: TestEnv) {
    if !capabilities(&env).await.reconnects {
        return;
    }
    let seen = Seen::new();
    let bus = recorder(&env, &seen).await;
    let mut events = bus.connection_events();
    tokio::task::block_in_place(|| env.restart("conf:notes"));
    let resubscribed = tokio::time::timeout(WAIT, async {
        while let Ok(e) = events.recv().await {
            if matches!(e, ConnectionEvent::Resubscribed { .. }) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(resubscribed, Ok(true));
    bus.ready(WAIT).await.unwrap();
    bus.publish(note(9)).await.unwrap();
    assert!(
        wait_for(WAIT, || seen.snapshot() == vec![9]).await,
        "{:?}",
        seen.snapshot()
    );
    bus.shutdown().await.unwrap();
}

/// Durable events (where acknowledgements are offered): instances of one service share a
/// group, each entry handled once.
async fn durable_groups_share_the_work(env: TestEnv) {
    if !capabilities(&env).await.acks {
        return;
    }
    let seen = Seen::new();
    let mut buses = Vec::new();
    for _ in 0..2 {
        let s = seen.clone();
        let bus = EventBus::builder()
            .service("conf")
            .handler_with(
                move |t: Task| {
                    let s = s.clone();
                    async move { s.push(t.n) }
                },
                HandlerOptions::new().name("work"),
            )
            .connect(&env.url)
            .await
            .unwrap();
        buses.push(bus);
    }
    for n in 0..200 {
        let receipt = buses[0].publish(Task { n }).await.unwrap();
        assert!(receipt.entry_id.is_some());
    }
    assert!(wait_for(WAIT, || seen.len() == 200).await, "{}", seen.len());
    let mut got = seen.snapshot();
    got.sort_unstable();
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "each once");
    for bus in buses {
        bus.shutdown().await.unwrap();
    }
}

macro_rules! on_every_transport {
    ($($transport:ident => $env:expr),* $(,)?) => {
        $(
            mod $transport {
                use super::*;

                macro_rules! behaviour {
                    ($name:ident) => {
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $name() {
                            if let Some(env) = $env {
                                super::$name(env).await;
                            }
                        }
                    };
                }

                behaviour!(delivery_once_in_order);
                behaviour!(fan_out_to_every_subscriber);
                behaviour!(patterns_match_only_their_channels);
                behaviour!(keyed_events_reach_their_handlers);
                behaviour!(raw_channels_carry_bytes);
                behaviour!(failures_are_isolated);
                behaviour!(unsubscribe_stops_delivery);
                behaviour!(bad_input_is_reported_and_skipped);
                behaviour!(shutdown_drains_then_refuses);
                behaviour!(reconnects_after_a_server_restart);
                behaviour!(durable_groups_share_the_work);
            }
        )*
    };
}

on_every_transport!(
    memory => Some(TestEnv::memory()),
    redis => TestEnv::redis(),
    sentinel => TestEnv::sentinel(),
    cluster => TestEnv::cluster(),
);
