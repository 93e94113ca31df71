//! The runtime's delivery guarantees, run on the in-process transport and on a real
//! redis-server: every test body below runs once per transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use eventbus::{
    ConnectErrorKind, Envelope, Event, EventBus, Failure, FailureCause, HandlerOptions, Message,
    Overflow, PublishErrorKind, PublishOptions, RetryPolicy, State, SubscribeErrorKind, Topic,
};
use eventbus_suite::{Seen, TestEnv, alive_tasks, on_both_transports, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order_placed", version = 2)]
struct OrderPlaced {
    order_id: String,
    total: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(channel = "user:{user_id}:notifications")]
struct Notification {
    user_id: u64,
    text: String,
}

const WAIT: Duration = Duration::from_secs(10);

fn user(i: u64) -> UserCreated {
    UserCreated {
        user_id: i,
        name: format!("user-{i}"),
    }
}

/// A failure log shared with the error hook.
fn failures() -> (Seen<Failure>, impl Fn(&Failure) + Send + Sync + 'static) {
    let seen = Seen::new();
    let hook = {
        let seen = seen.clone();
        move |f: &Failure| seen.push(f.clone())
    };
    (seen, hook)
}

async fn every_handler_gets_every_event_in_order(env: TestEnv) {
    const N: u64 = 1000;
    let a = Seen::new();
    let b = Seen::new();
    let (a2, b2) = (a.clone(), b.clone());
    let subscriber = EventBus::builder()
        .service("subscriber")
        .handler_with(
            HandlerOptions::new().queue_capacity(2 * N as usize),
            move |e: UserCreated| {
                let a = a2.clone();
                async move { a.push(e.user_id) }
            },
        )
        .handler_with(
            HandlerOptions::new().queue_capacity(2 * N as usize),
            move |e: Envelope<UserCreated>| {
                let b = b2.clone();
                async move { b.push((e.data().user_id, e.source().to_owned())) }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    let publisher = EventBus::builder()
        .service("publisher")
        .connect(&env.url)
        .await
        .unwrap();
    for i in 0..N {
        let receipt = publisher.publish(user(i)).await.unwrap();
        assert_eq!(receipt.receivers, 1, "one subscriber connection per bus");
        assert_eq!(receipt.channel, "events:user_created");
    }
    assert!(wait_for(WAIT, || a.len() == N as usize && b.len() == N as usize).await);
    assert_eq!(a.snapshot(), (0..N).collect::<Vec<_>>(), "in publish order");
    let b = b.snapshot();
    assert!(b.iter().map(|(id, _)| *id).eq(0..N));
    assert!(b.iter().all(|(_, source)| source == "publisher"));
    let m = subscriber.metrics();
    assert_eq!(m.handlers.len(), 2);
    assert!(
        m.handlers
            .iter()
            .all(|h| h.handled == N && h.failed == 0 && h.dropped == 0)
    );
    assert_eq!(publisher.metrics().event_types["user_created"].published, N);
    subscriber.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}

#[derive(Debug, thiserror::Error)]
#[error("mail server refused user {0}")]
struct MailError(u64);

async fn failing_panicking_and_hanging_handlers_leave_the_others_alone(env: TestEnv) {
    const N: u64 = 1000;
    let (seen_failures, hook) = failures();
    let good = Seen::new();
    let good2 = good.clone();
    let bus = EventBus::builder()
        .service("isolation")
        .on_error(hook)
        .handler_with(
            HandlerOptions::new()
                .name("errors")
                .queue_capacity(2 * N as usize),
            |e: UserCreated| async move { Err::<(), _>(MailError(e.user_id)) },
        )
        .handler_with(
            HandlerOptions::new()
                .name("panics")
                .queue_capacity(2 * N as usize),
            |e: UserCreated| async move {
                if e.user_id < u64::MAX {
                    panic!("boom at {}", e.user_id);
                }
            },
        )
        .handler_with(
            HandlerOptions::new()
                .name("hangs")
                .timeout(Duration::from_millis(20))
                .queue_capacity(4),
            |_e: UserCreated| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            },
        )
        .handler_with(
            HandlerOptions::new()
                .name("good")
                .queue_capacity(2 * N as usize),
            move |e: UserCreated| {
                let good = good2.clone();
                async move { good.push(e.user_id) }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    let mut first_id = None;
    for i in 0..N {
        let r = bus.publish(user(i)).await.unwrap();
        first_id.get_or_insert(r.id);
    }
    assert!(
        wait_for(WAIT, || good.len() == N as usize).await,
        "good handler got {}",
        good.len()
    );
    assert_eq!(good.snapshot(), (0..N).collect::<Vec<_>>());
    assert!(
        wait_for(WAIT, || {
            let m = bus.metrics();
            m.handler("errors").unwrap().failed == N && m.handler("panics").unwrap().panicked == N
        })
        .await
    );
    let m = bus.metrics();
    let hangs = m.handler("hangs").unwrap();
    assert!(hangs.timed_out >= 1, "the hanging handler timed out");
    assert_eq!(hangs.handled, 0);
    assert!(
        hangs.dropped > 0,
        "its small queue overflowed and counted the drops"
    );
    assert_eq!(m.handler("good").unwrap().failed, 0);

    let failures = seen_failures.snapshot();
    let first_id = first_id.unwrap();
    let handler_failure = |name: &str| {
        failures.iter().find_map(|f| match f {
            Failure::Handler(h)
                if &*h.handler == name && h.event_id.as_deref() == Some(&*first_id) =>
            {
                Some(h.clone())
            }
            _ => None,
        })
    };
    let e = handler_failure("errors").expect("error reported with the event id");
    assert_eq!(&*e.event_type, "user_created");
    assert_eq!(e.attempt, 1);
    assert!(!e.will_retry);
    assert!(
        matches!(&e.cause, FailureCause::Error(err) if err.to_string() == "mail server refused user 0")
    );
    let p = handler_failure("panics").expect("panic reported");
    assert!(
        matches!(&p.cause, FailureCause::Panic(msg) if msg == "boom at 0"),
        "{:?}",
        p.cause
    );
    let t = handler_failure("hangs").expect("timeout reported");
    assert!(matches!(t.cause, FailureCause::Timeout(d) if d == Duration::from_millis(20)));
    assert!(
        failures
            .iter()
            .any(|f| matches!(f, Failure::Overflow(o) if &*o.handler == "hangs"))
    );
    assert!(
        !failures
            .iter()
            .any(|f| matches!(f, Failure::Handler(h) if &*h.handler == "good"))
    );
    let _ = bus.shutdown().await;
}

async fn full_queues_follow_their_policy_and_count_drops(env: TestEnv) {
    for policy in [Overflow::DropNewest, Overflow::DropOldest] {
        let gate = Arc::new(Semaphore::new(0));
        let seen = Seen::new();
        let (g, s) = (gate.clone(), seen.clone());
        let (seen_failures, hook) = failures();
        let bus = EventBus::builder()
            .on_error(hook)
            .handler_with(
                HandlerOptions::new()
                    .name("blocked")
                    .queue_capacity(10)
                    .overflow(policy)
                    .no_timeout(),
                move |e: UserCreated| {
                    let (g, s) = (g.clone(), s.clone());
                    async move {
                        g.acquire().await.unwrap().forget();
                        s.push(e.user_id);
                    }
                },
            )
            .connect(&env.url)
            .await
            .unwrap();
        // The first event is taken by the worker and blocks it; ten more fill the queue.
        bus.publish(user(0)).await.unwrap();
        assert!(
            wait_for(WAIT, || bus.metrics().handler("blocked").unwrap().in_flight
                == 1)
            .await
        );
        for i in 1..50 {
            bus.publish(user(i)).await.unwrap();
        }
        assert!(
            wait_for(WAIT, || bus.metrics().handler("blocked").unwrap().received
                == 50)
            .await
        );
        let m = bus.metrics();
        let h = m.handler("blocked").unwrap();
        assert_eq!(h.dropped, 39, "{policy:?}");
        assert_eq!(h.queue_depth, 10);
        gate.add_permits(100);
        assert!(wait_for(WAIT, || seen.len() == 11).await);
        let expected: Vec<u64> = match policy {
            Overflow::DropNewest => (0..11).collect(),
            _ => std::iter::once(0).chain(40..50).collect(),
        };
        assert_eq!(seen.snapshot(), expected, "{policy:?}");
        let overflow_reports = seen_failures
            .snapshot()
            .into_iter()
            .filter(|f| matches!(f, Failure::Overflow(_)))
            .count();
        assert_eq!(
            overflow_reports, 1,
            "the first drop is reported, later ones counted"
        );
        bus.shutdown().await.unwrap();
    }
}

async fn shutdown_drains_queued_events(env: TestEnv) {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let bus = EventBus::builder()
        .shutdown_timeout(Duration::from_secs(20))
        .handler(move |_: UserCreated| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .connect(&env.url)
        .await
        .unwrap();
    for i in 0..100 {
        bus.publish(user(i)).await.unwrap();
    }
    assert!(wait_for(WAIT, || bus.metrics().handlers[0].received == 100).await);
    let report = bus.shutdown().await.unwrap();
    assert_eq!(
        done.load(Ordering::SeqCst),
        100,
        "everything queued was handled"
    );
    assert_eq!(report.unprocessed, 0);
    assert!(report.drained > 0 && report.drained <= 100);
    let err = bus.publish(user(1)).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Closed);
    assert_eq!(
        bus.shutdown().await.unwrap(),
        report,
        "a second shutdown returns the outcome of the first"
    );
}

async fn shutdown_deadline_reports_what_was_left(env: TestEnv) {
    let bus = EventBus::builder()
        .shutdown_timeout(Duration::from_millis(200))
        .handler_with(
            HandlerOptions::new().no_timeout(),
            |_: UserCreated| async move { tokio::time::sleep(Duration::from_secs(3600)).await },
        )
        .connect(&env.url)
        .await
        .unwrap();
    for i in 0..5 {
        bus.publish(user(i)).await.unwrap();
    }
    assert!(wait_for(WAIT, || bus.metrics().handlers[0].received == 5).await);
    let started = std::time::Instant::now();
    let err = bus.shutdown().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.report.unprocessed, 5, "one in flight and four queued");
    assert!(err.to_string().contains("5 event(s) unprocessed"), "{err}");
}

async fn dropped_subscription_stops_deliveries(env: TestEnv) {
    let bus = EventBus::builder().connect(&env.url).await.unwrap();
    let seen = Seen::new();
    let s = seen.clone();
    let sub = bus
        .subscribe(move |e: UserCreated| {
            let s = s.clone();
            async move { s.push(e.user_id) }
        })
        .await
        .unwrap();
    assert_eq!(bus.publish(user(1)).await.unwrap().receivers, 1);
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    drop(sub);
    assert!(wait_for(WAIT, || bus.topics().is_empty()).await);
    // The unsubscribe reaches the server shortly after the drop; until then the bus still
    // gets what is published, and routes it nowhere.
    let mut strays = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let receivers = bus.publish(user(2)).await.unwrap().receivers;
        if receivers == 0 {
            break;
        }
        strays += receivers;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel was not unsubscribed within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        wait_for(WAIT, || bus.metrics().received == 1 + strays).await,
        "every message sent before the unsubscribe arrived: {:#?}",
        bus.metrics()
    );
    assert_eq!(bus.metrics().unrouted, strays);
    assert_eq!(seen.snapshot(), vec![1]);

    // unsubscribe() ends a subscription the same way, awaiting the server.
    let sub = bus.subscribe(|_: UserCreated| async {}).await.unwrap();
    assert_eq!(sub.topics(), &[Topic::channel("events:user_created")]);
    assert_eq!(bus.publish(user(3)).await.unwrap().receivers, 1);
    sub.unsubscribe().await.unwrap();
    assert_eq!(bus.publish(user(4)).await.unwrap().receivers, 0);

    // A bad topic after start-up is an error, not a panic.
    let err = bus
        .subscribe_with(
            HandlerOptions::new().topic(Topic::channel("chat general")),
            |_: Message| async {},
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), SubscribeErrorKind::Config);
    assert!(err.to_string().contains("whitespace"), "{err}");
    let err = bus.subscribe(|_: Message| async {}).await.unwrap_err();
    assert!(err.to_string().contains("needs a"), "{err}");
    bus.shutdown().await.unwrap();
}

async fn streams_pull_typed_events(env: TestEnv) {
    use futures_util::StreamExt;
    let bus = EventBus::builder().connect(&env.url).await.unwrap();
    let mut stream = bus.stream::<OrderPlaced>().await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
    assert!(nothing.is_err(), "no event yet: the poll times out");
    for i in 0..3 {
        bus.publish(OrderPlaced {
            order_id: format!("o-{i}"),
            total: 10.5 * i as f64,
        })
        .await
        .unwrap();
    }
    for i in 0..3 {
        let env = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(env.data().order_id, format!("o-{i}"));
        assert_eq!(env.version(), Some(2));
    }
    stream.unsubscribe().await.unwrap();
    assert!(bus.topics().is_empty());
    bus.shutdown().await.unwrap();
}

async fn pattern_keyed_and_raw_handlers(env: TestEnv) {
    let all = Seen::new();
    let keyed_all = Seen::new();
    let keyed_42 = Seen::new();
    let raw = Seen::new();
    let (a, ka, k42, r) = (
        all.clone(),
        keyed_all.clone(),
        keyed_42.clone(),
        raw.clone(),
    );
    let bus = EventBus::builder()
        .handler_on(
            Topic::pattern("events:*"),
            move |e: Envelope<serde_json::Value>| {
                let a = a.clone();
                async move { a.push((e.event_type().to_owned(), e.data().clone())) }
            },
        )
        .handler(move |n: Notification| {
            let ka = ka.clone();
            async move { ka.push(n.user_id) }
        })
        .handler_on(
            Topic::keyed::<Notification>(&[&42]),
            move |n: Notification| {
                let k42 = k42.clone();
                async move { k42.push(n.text) }
            },
        )
        .handler_on(Topic::channel("chat:general"), move |m: Message| {
            let r = r.clone();
            async move { r.push((m.channel.to_string(), m.text().map(str::to_owned))) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.publish(user(7)).await.unwrap();
    bus.publish(OrderPlaced {
        order_id: "o-1".into(),
        total: 3.5,
    })
    .await
    .unwrap();
    for (id, text) in [(41, "a"), (42, "b"), (43, "c")] {
        let r = bus
            .publish(Notification {
                user_id: id,
                text: text.into(),
            })
            .await
            .unwrap();
        assert_eq!(r.channel, format!("user:{id}:notifications"));
    }
    assert_eq!(
        bus.publish_raw("chat:general", "hello, room")
            .await
            .unwrap()
            .receivers,
        1
    );
    assert!(
        wait_for(WAIT, || all.len() == 2
            && keyed_all.len() == 3
            && keyed_42.len() == 1
            && raw.len() == 1)
        .await
    );
    let all = all.snapshot();
    assert_eq!(all[0].0, "user_created");
    assert_eq!(
        all[0].1,
        serde_json::json!({"user_id": 7, "name": "user-7"})
    );
    assert_eq!(all[1].0, "order_placed");
    assert_eq!(keyed_all.snapshot(), vec![41, 42, 43]);
    assert_eq!(keyed_42.snapshot(), vec!["b".to_owned()]);
    assert_eq!(
        raw.snapshot(),
        vec![("chat:general".to_owned(), Some("hello, room".to_owned()))]
    );
    let mut channels = bus.channels(None).await.unwrap();
    channels.sort();
    assert_eq!(channels, vec!["chat:general", "user:42:notifications"]);
    assert_eq!(bus.numpat().await.unwrap(), 2);
    assert!(bus.ping().await.is_ok());
    bus.shutdown().await.unwrap();
}

#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);

async fn state_and_follow_up_events_carry_correlation(env: TestEnv) {
    let counter = Counter(Arc::new(AtomicUsize::new(0)));
    let orders = Seen::new();
    let o = orders.clone();
    let bus = EventBus::builder()
        .service("shop")
        .state(counter.clone())
        .handler(
            |e: Envelope<UserCreated>, State(c): State<Counter>, bus: EventBus| async move {
                c.0.fetch_add(1, Ordering::SeqCst);
                let order = OrderPlaced {
                    order_id: format!("welcome-{}", e.data().user_id),
                    total: 0.0,
                };
                bus.publish_with(order, PublishOptions::caused_by(&e))
                    .await?;
                Ok::<_, eventbus::PublishError>(())
            },
        )
        .handler(move |e: Envelope<OrderPlaced>| {
            let o = o.clone();
            async move {
                o.push((
                    e.correlation_id().map(str::to_owned),
                    e.causation_id().map(str::to_owned),
                    e.source().to_owned(),
                ))
            }
        })
        .connect(&env.url)
        .await
        .unwrap();
    let receipt = bus
        .publish_with(user(5), PublishOptions::new().correlation_id("req-1"))
        .await
        .unwrap();
    assert!(wait_for(WAIT, || orders.len() == 1).await);
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        orders.snapshot(),
        vec![(
            Some("req-1".to_owned()),
            Some(receipt.id),
            "shop".to_owned()
        )]
    );
    bus.shutdown().await.unwrap();

    let err = EventBus::builder()
        .handler(|_: UserCreated, State(_): State<String>| async {})
        .connect(&env.url)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Config);
    assert!(
        err.to_string()
            .contains("no state of type `alloc::string::String`"),
        "{err}"
    );
}

async fn retries_then_dead_letters_then_replay(env: TestEnv) {
    let calls = Arc::new(AtomicUsize::new(0));
    let fail_until = Arc::new(AtomicUsize::new(2));
    let (c, f) = (calls.clone(), fail_until.clone());
    let (seen_failures, hook) = failures();
    let bus = EventBus::builder()
        .on_error(hook)
        .handler_with(
            HandlerOptions::new().name("flaky").retry(
                RetryPolicy::attempts(3)
                    .backoff(Duration::from_millis(5), Duration::from_millis(20)),
            ),
            move |e: UserCreated| {
                let (c, f) = (c.clone(), f.clone());
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    if n < f.load(Ordering::SeqCst) {
                        anyhow::bail!("flaky for user {}", e.user_id);
                    }
                    Ok(())
                }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    bus.publish(user(1)).await.unwrap();
    assert!(
        wait_for(WAIT, || bus.metrics().handler("flaky").unwrap().handled
            == 1)
        .await
    );
    let m = bus.metrics();
    let h = m.handler("flaky").unwrap();
    assert_eq!((h.retried, h.failed, h.dead_lettered), (2, 0, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let attempts: Vec<(u32, bool)> = seen_failures
        .snapshot()
        .iter()
        .filter_map(|f| match f {
            Failure::Handler(h) => Some((h.attempt, h.will_retry)),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![(1, true), (2, true)]);

    // Now it always fails: three attempts, then a dead letter.
    fail_until.store(usize::MAX, Ordering::SeqCst);
    let receipt = bus.publish(user(2)).await.unwrap();
    assert!(
        wait_for(WAIT, || bus
            .metrics()
            .handler("flaky")
            .unwrap()
            .dead_lettered
            == 1)
        .await
    );
    let letters = bus.dead_letters("user_created", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.handler, "flaky");
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.channel, "events:user_created");
    assert!(
        letter.error.contains("flaky for user 2"),
        "{}",
        letter.error
    );
    let original = Envelope::<UserCreated>::decode(&letter.payload).unwrap();
    assert_eq!(original.id(), receipt.id);

    // Replay after the cause is fixed: handled, and gone from the store.
    fail_until.store(0, Ordering::SeqCst);
    assert_eq!(bus.replay_dead_letter(letter).await.unwrap().receivers, 1);
    assert!(
        wait_for(WAIT, || bus.metrics().handler("flaky").unwrap().handled
            == 2)
        .await
    );
    assert!(
        bus.dead_letters("user_created", 10)
            .await
            .unwrap()
            .is_empty()
    );
    bus.shutdown().await.unwrap();
}

async fn bad_messages_are_reported_and_the_next_event_arrives(env: TestEnv) {
    let (seen_failures, hook) = failures();
    let seen = Seen::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .on_error(hook)
        .max_message_size(4096)
        .handler(move |e: UserCreated| {
            let s = s.clone();
            async move { s.push(e.user_id) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        br#"{"data": {"user_id": 1, "name": "x"}}"#.to_vec(),
        br#"{"type": "order_placed", "data": {"order_id": "o", "total": 1}}"#.to_vec(),
        br#"{"type": "user_created", "data": {"user_id": "nope", "name": "x"}}"#.to_vec(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        vec![b'x'; 5000],
    ];
    for payload in &bad {
        if let Err(e) = bus
            .publish_raw("events:user_created", payload.clone())
            .await
        {
            assert_eq!(e.kind(), PublishErrorKind::TooLarge);
        }
    }
    // Oversized ones are refused by our own publisher; send them through a second bus with a
    // larger limit so the subscriber sees them.
    let big = EventBus::builder()
        .max_message_size(1 << 20)
        .connect(&env.url)
        .await
        .unwrap();
    big.publish_raw("events:user_created", bad[5].clone())
        .await
        .unwrap();
    big.publish_raw("events:user_created", bad[6].clone())
        .await
        .unwrap();
    bus.publish(user(99)).await.unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    assert_eq!(seen.snapshot(), vec![99]);
    let decode: Vec<String> = seen_failures
        .snapshot()
        .iter()
        .filter_map(|f| match f {
            Failure::Decode(d) => {
                assert_eq!(&*d.channel, "events:user_created");
                Some(d.to_string())
            }
            _ => None,
        })
        .collect();
    // The envelope of another type is skipped, not reported.
    assert_eq!(decode.len(), 6, "{decode:#?}");
    assert!(
        decode[0].contains("not json at all"),
        "excerpt shown: {}",
        decode[0]
    );
    assert!(decode.iter().any(|d| d.contains("type")));
    assert!(
        decode.iter().any(|d| d.contains("user_id")),
        "serde path shown: {decode:#?}"
    );
    assert!(
        decode.iter().any(|d| d.contains("5000 bytes")),
        "{decode:#?}"
    );
    assert_eq!(bus.metrics().decode_errors, 6);
    assert_eq!(bus.metrics().handlers[0].skipped, 1);
    bus.shutdown().await.unwrap();
    big.shutdown().await.unwrap();
}

async fn concurrency_runs_handlers_side_by_side(env: TestEnv) {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let bus = EventBus::builder()
        .handler_with(
            HandlerOptions::new().name("wide").concurrency(4),
            move |_: UserCreated| {
                let (n, p) = (n.clone(), p.clone());
                async move {
                    let cur = n.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(cur, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    n.fetch_sub(1, Ordering::SeqCst);
                }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    for i in 0..16 {
        bus.publish(user(i)).await.unwrap();
    }
    assert!(
        wait_for(WAIT, || bus.metrics().handler("wide").unwrap().handled
            == 16)
        .await
    );
    assert_eq!(peak.load(Ordering::SeqCst), 4);
    bus.shutdown().await.unwrap();
}

async fn resubscribing_right_after_a_drop_keeps_receiving(env: TestEnv) {
    let bus = EventBus::builder().connect(&env.url).await.unwrap();
    // Another topic held throughout keeps the transport's subscriber open, so that each round
    // starts from the same tasks: these, once the last round's worker has ended.
    let _keeper = bus.subscribe(|_: OrderPlaced| async {}).await.unwrap();
    let steady = alive_tasks();
    for round in 0..20u64 {
        assert!(
            wait_for(WAIT, || alive_tasks() <= steady).await,
            "round {round}: {} tasks alive, {steady} before the round",
            alive_tasks()
        );
        let old = bus.subscribe(|_: UserCreated| async {}).await.unwrap();
        let with_one = alive_tasks();
        drop(old);
        let seen = Seen::new();
        let s = seen.clone();
        let new = bus
            .subscribe(move |e: UserCreated| {
                let s = s.clone();
                async move { s.push(e.user_id) }
            })
            .await
            .unwrap();
        // The dropped subscription's unsubscribe runs on a task of its own and, done right,
        // leaves no trace: wait until that task and the old handler's worker have ended (the
        // runtime is back to the tasks of one subscription), then check it did not undo the
        // new one.
        assert!(
            wait_for(WAIT, || alive_tasks() <= with_one).await,
            "round {round}: {} tasks alive, {with_one} with one subscription",
            alive_tasks()
        );
        assert_eq!(
            bus.publish(user(round)).await.unwrap().receivers,
            1,
            "round {round}"
        );
        assert!(wait_for(WAIT, || seen.len() == 1).await, "round {round}");
        new.unsubscribe().await.unwrap();
    }
    bus.shutdown().await.unwrap();
}

async fn shutdown_deadline_cancels_concurrent_runs(env: TestEnv) {
    let tasks_before = alive_tasks();
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let bus = EventBus::builder()
        .shutdown_timeout(Duration::from_millis(100))
        .handler_with(
            HandlerOptions::new()
                .name("slow")
                .concurrency(2)
                .no_timeout(),
            move |_: UserCreated| {
                let f = f.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    f.fetch_add(1, Ordering::SeqCst);
                }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    for i in 0..5 {
        bus.publish(user(i)).await.unwrap();
    }
    assert!(
        wait_for(WAIT, || {
            let m = bus.metrics();
            let h = m.handler("slow").unwrap();
            h.in_flight == 2 && h.received == 5
        })
        .await
    );
    let err = bus.shutdown().await.unwrap_err();
    assert_eq!(
        err.report.unprocessed, 5,
        "two running, three queued: {err:?}"
    );
    // A run that was not cancelled would end 500 ms in, counting itself: wait until every
    // task of the bus has ended.
    assert!(
        wait_for(WAIT, || alive_tasks() <= tasks_before).await,
        "{} tasks alive, {tasks_before} before the bus",
        alive_tasks()
    );
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "abandoned runs were cancelled"
    );
    let m = bus.metrics();
    assert_eq!(
        m.handler("slow").unwrap().failed,
        0,
        "abandoned is not failed"
    );
}

async fn data_and_envelope_handlers_of_one_type_report_a_bad_message_once(env: TestEnv) {
    let (seen_failures, hook) = failures();
    let data = Seen::new();
    let full = Seen::new();
    let (d, f) = (data.clone(), full.clone());
    let bus = EventBus::builder()
        .on_error(hook)
        .handler_with(HandlerOptions::new().name("data"), move |e: UserCreated| {
            let d = d.clone();
            async move { d.push(e.user_id) }
        })
        .handler_with(
            HandlerOptions::new().name("full"),
            move |e: Envelope<UserCreated>| {
                let f = f.clone();
                async move { f.push((e.data().user_id, e.id().to_owned())) }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    bus.publish_raw(
        "events:user_created",
        r#"{"type":"user_created","id":7,"data":{"user_id":"x","name":"n"}}"#,
    )
    .await
    .unwrap();
    let receipt = bus.publish(user(8)).await.unwrap();
    assert!(wait_for(WAIT, || data.len() == 1 && full.len() == 1).await);
    assert_eq!(data.snapshot(), vec![8]);
    assert_eq!(full.snapshot(), vec![(8, receipt.id)]);
    let reports = seen_failures
        .snapshot()
        .into_iter()
        .filter(|f| matches!(f, Failure::Decode(_)))
        .count();
    assert_eq!(reports, 1);
    let m = bus.metrics();
    assert_eq!(m.decode_errors, 1);
    assert_eq!(m.handler("data").unwrap().decode_errors, 1);
    assert_eq!(m.handler("full").unwrap().decode_errors, 1);
    bus.shutdown().await.unwrap();
}

on_both_transports!(
    data_and_envelope_handlers_of_one_type_report_a_bad_message_once,
    resubscribing_right_after_a_drop_keeps_receiving,
    shutdown_deadline_cancels_concurrent_runs,
    every_handler_gets_every_event_in_order,
    failing_panicking_and_hanging_handlers_leave_the_others_alone,
    full_queues_follow_their_policy_and_count_drops,
    shutdown_drains_queued_events,
    shutdown_deadline_reports_what_was_left,
    dropped_subscription_stops_deliveries,
    streams_pull_typed_events,
    pattern_keyed_and_raw_handlers,
    state_and_follow_up_events_carry_correlation,
    retries_then_dead_letters_then_replay,
    bad_messages_are_reported_and_the_next_event_arrives,
    concurrency_runs_handlers_side_by_side,
);
