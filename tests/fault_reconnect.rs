//! Resilience of the Redis transport: a killed and restarted server, killed client
//! connections, a hung server, a server that stays down. Handlers must get events published
//! after recovery with no user action, the bus must report the gap, and nothing may hang.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{ConnectionEvent, Event, EventBus, PublishErrorKind};
use eventbus_suite::redis_server::{RedisServer, client_field};
use eventbus_suite::{PUBLISH_DEADLINE, Ping, RESPONSE_TIMEOUT, bounded, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Late {
    n: u64,
}

/// How often the watchdog checks each connection here. A silent connection is noticed about
/// this plus [`RESPONSE_TIMEOUT`] after it went silent; without a watchdog, never (a stopped
/// server keeps its sockets open).
const WATCHDOG: Duration = Duration::from_millis(200);

/// How long the bus may take to notice a loss, recover, or report it. Generous, so that a
/// loaded machine does not fail the tests, and still far below what a bus without a watchdog
/// or without reconnection would need (it would never get there).
const RECOVERY: Duration = Duration::from_secs(20);

/// Scheduling slack on top of a deadline the bus must honour, for a loaded machine; well
/// below the time a publish would take if the deadline were not honoured (the test's bound).
const SLACK: Duration = Duration::from_secs(2);

/// The shared short timeouts, with the watchdog at [`WATCHDOG`].
fn watched() -> RedisOptions {
    eventbus_suite::fast().watchdog_interval(Some(WATCHDOG))
}

async fn ping_bus(url: &str) -> (EventBus, mpsc::UnboundedReceiver<Ping>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bus = EventBus::builder()
        .service("test")
        .redis_options(watched())
        .handler(move |e: Ping| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(url)
        .await
        .expect("connect");
    (bus, rx)
}

/// Publishes `Ping { n }` (with growing `n`) until the handler receives one, for at most
/// `within`; publish errors along the way are expected while the bus recovers. Returns the
/// number that got through.
async fn delivery_resumes(
    bus: &EventBus,
    rx: &mut mpsc::UnboundedReceiver<Ping>,
    first: u64,
    within: Duration,
) -> u64 {
    let start = Instant::now();
    let mut n = first;
    loop {
        assert!(
            start.elapsed() < within,
            "no delivery within {within:?} (last tried {n})"
        );
        let _ = bus.publish(Ping { n }).await;
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            // Drain whatever else arrived; report the first.
            while rx.try_recv().is_ok() {}
            return got.n;
        }
        n += 1;
    }
}

/// Collects connection events until `done` says the expected ones arrived (at most
/// [`RECOVERY`]).
async fn wait_for_events(
    events: &mut broadcast::Receiver<ConnectionEvent>,
    seen: &mut Vec<ConnectionEvent>,
    done: impl Fn(&[ConnectionEvent]) -> bool,
) {
    let start = Instant::now();
    while !done(seen) {
        let left = RECOVERY.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) => seen.push(e),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("events closed; saw {seen:#?}"),
            Err(_) => panic!("expected events did not arrive within {RECOVERY:?}; saw {seen:#?}"),
        }
    }
}

fn has(seen: &[ConnectionEvent], f: impl Fn(&ConnectionEvent) -> bool) -> bool {
    seen.iter().any(f)
}

fn disconnected(role: &'static str) -> impl Fn(&ConnectionEvent) -> bool {
    move |e| matches!(e, ConnectionEvent::Disconnected { role: r, .. } if *r == role)
}

fn reconnected(role: &'static str) -> impl Fn(&ConnectionEvent) -> bool {
    move |e| matches!(e, ConnectionEvent::Reconnected { role: r, .. } if *r == role)
}

/// Runs a blocking harness call (restart waits for the server) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

// (a)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_server_resumes_delivery() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    bounded(async move {
        let (bus, mut rx) = ping_bus(&url).await;
        let mut events = bus.connection_events();
        bus.publish(Ping { n: 0 }).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().n, 0);

        server.kill();
        let mut seen = Vec::new();
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, disconnected("subscriber")) && has(s, disconnected("publisher"))
        })
        .await;

        // Subscribing while the server is down records the topic for the reconnect.
        let (late_tx, mut late_rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        let _late = bus
            .subscribe(move |e: Late| {
                let tx = late_tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            })
            .await
            .expect("subscribing while disconnected is recorded, not refused");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        let server = blocking(move || {
            server.restart();
            server
        })
        .await;
        let got = delivery_resumes(&bus, &mut rx, 1, RECOVERY).await;
        assert!(got >= 1);
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, reconnected("subscriber"))
                && has(s, reconnected("publisher"))
                && has(s, |e| {
                    matches!(e, ConnectionEvent::Resubscribed { topics: 2 })
                })
        })
        .await;
        // Order per role: the loss comes before the recovery.
        let pos = |f: &dyn Fn(&ConnectionEvent) -> bool| seen.iter().position(f).unwrap();
        assert!(
            pos(&disconnected("subscriber")) < pos(&reconnected("subscriber")),
            "{seen:#?}"
        );

        let receipt = bus.publish(Late { n: 9 }).await.unwrap();
        assert_eq!(
            receipt.receivers, 1,
            "the topic added while down was subscribed"
        );
        let late = tokio::time::timeout(Duration::from_secs(5), late_rx.recv()).await;
        assert_eq!(late.unwrap().unwrap(), Late { n: 9 });
        let numsub = server.cli(&["PUBSUB", "NUMSUB", "events:ping", "events:late"]);
        assert_eq!(
            numsub.lines().collect::<Vec<_>>(),
            ["events:ping", "1", "events:late", "1"]
        );
        assert_eq!(bus.metrics().reconnects, 2, "one per connection");
        bus.shutdown().await.unwrap();
    })
    .await;
}

// (b)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_connections_recover() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, mut rx) = ping_bus(&server.url()).await;
        let mut events = bus.connection_events();
        let mut seen = Vec::new();

        let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert_eq!(killed, "1", "one subscriber connection");
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, |e| {
                matches!(e, ConnectionEvent::Resubscribed { topics: 1 })
            })
        })
        .await;
        assert!(!has(&seen, disconnected("publisher")), "{seen:#?}");
        let receipt = bus.publish(Ping { n: 1 }).await.unwrap();
        assert_eq!(receipt.receivers, 1);
        assert_eq!(rx.recv().await.unwrap().n, 1);

        // The publisher's two connections, one after the other: the next publish goes
        // through on new connections, with no error.
        for (n, which) in [(2, Publisher::Lane), (3, Publisher::Commands)] {
            let id = publisher_id(&server, which).await;
            let killed = server.cli(&["CLIENT", "KILL", "ID", &id]);
            assert_eq!(killed, "1", "the publisher's {which:?} connection");
            let receipt = bus
                .publish(Ping { n })
                .await
                .unwrap_or_else(|e| panic!("publish after CLIENT KILL of {which:?}: {e}"));
            assert_eq!(receipt.receivers, 1);
            assert_eq!(rx.recv().await.unwrap().n, n);
            wait_for_events(&mut events, &mut seen, |s| {
                has(s, disconnected("publisher")) && has(s, reconnected("publisher"))
            })
            .await;
            seen.clear();
        }
        bus.shutdown().await.unwrap();
    })
    .await;
}

// (c)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_fails_publishes_in_time_and_recovers_when_it_resumes() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, mut rx) = ping_bus(&server.url()).await;
        let mut events = bus.connection_events();
        let mut seen = Vec::new();

        server.pause_process();
        let start = Instant::now();
        let err = bus
            .publish(Ping { n: 1 })
            .await
            .expect_err("the server is stopped");
        let took = start.elapsed();
        assert!(
            matches!(
                err.kind(),
                PublishErrorKind::Timeout | PublishErrorKind::Disconnected
            ),
            "{:?}: {err}",
            err.kind()
        );
        assert!(
            took <= PUBLISH_DEADLINE + RESPONSE_TIMEOUT + SLACK,
            "took {took:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{err}"
        );

        // The watchdog notices the silent connections.
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, disconnected("subscriber")) && has(s, disconnected("publisher"))
        })
        .await;
        let start = Instant::now();
        let err = bus.publish(Ping { n: 2 }).await.expect_err("still stopped");
        assert_eq!(err.kind(), PublishErrorKind::Disconnected, "{err}");
        assert!(
            start.elapsed() <= PUBLISH_DEADLINE + RESPONSE_TIMEOUT + SLACK,
            "took {:?}",
            start.elapsed()
        );

        server.resume_process();
        delivery_resumes(&bus, &mut rx, 3, RECOVERY).await;
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, reconnected("subscriber")) && has(s, reconnected("publisher"))
        })
        .await;
        bus.shutdown().await.unwrap();
    })
    .await;
}

// (d)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_down_fails_publishes_clearly_and_shutdown_is_prompt() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, _rx) = ping_bus(&server.url()).await;
        let mut events = bus.connection_events();
        server.kill();
        let mut seen = Vec::new();
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, disconnected("publisher"))
        })
        .await;

        let start = Instant::now();
        let err = bus
            .publish(Ping { n: 1 })
            .await
            .expect_err("the server is gone");
        let took = start.elapsed();
        assert_eq!(err.kind(), PublishErrorKind::Disconnected, "{err}");
        assert!(
            took >= PUBLISH_DEADLINE - Duration::from_millis(100),
            "took {took:?}"
        );
        assert!(took <= PUBLISH_DEADLINE + SLACK, "took {took:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", server.port())),
            "{text}"
        );
        assert!(text.contains("not connected"), "{text}");

        let start = Instant::now();
        bus.shutdown().await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "shutdown took {:?}",
            start.elapsed()
        );
        assert_eq!(
            bus.publish(Ping { n: 2 }).await.unwrap_err().kind(),
            PublishErrorKind::Closed
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_after_max_attempts_fails_publishes_at_once() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let bus = EventBus::builder()
            .redis_options(watched().max_reconnect_attempts(Some(2)))
            .connect(&server.url())
            .await
            .unwrap();
        let mut events = bus.connection_events();
        server.kill();
        let mut seen = Vec::new();
        wait_for_events(&mut events, &mut seen, |s| {
            has(s, |e| {
                matches!(e, ConnectionEvent::Disconnected { role: "publisher", cause } if cause.contains("gave up"))
            })
        })
        .await;
        let start = Instant::now();
        let err = bus.publish(Ping { n: 1 }).await.unwrap_err();
        assert_eq!(err.kind(), PublishErrorKind::Disconnected, "{err}");
        assert!(err.to_string().contains("gave up"), "{err}");
        // At once: far below the publish deadline a bus still trying would wait.
        assert!(start.elapsed() < PUBLISH_DEADLINE / 4, "{:?}", start.elapsed());
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_pass_the_watchdog() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        // A PING every 50 ms, each allowed more time than a loaded machine takes to answer:
        // only a watchdog that mistakes a healthy idle connection for a dead one drops it.
        let bus = EventBus::builder()
            .redis_options(
                watched()
                    .watchdog_interval(Some(Duration::from_millis(50)))
                    .response_timeout(Duration::from_secs(5)),
            )
            .connect(&server.url())
            .await
            .unwrap();
        let mut events = bus.connection_events();
        let sub = bus.subscribe(|_: Ping| async {}).await.unwrap();
        let connections = bus_connections(&server).await;
        watchdog_pinged(&server, &connections, "subscribed").await;
        // With nothing subscribed the pub/sub connection answers PING differently; still fine.
        sub.unsubscribe().await.unwrap();
        watchdog_pinged(&server, &connections, "unsubscribed").await;
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            if !matches!(e, ConnectionEvent::Connected { role: "subscriber" }) {
                seen.push(e);
            }
        }
        assert!(seen.is_empty(), "no connection losses expected: {seen:#?}");
        assert_eq!(
            bus_connections(&server).await,
            connections,
            "the same three connections throughout"
        );
        assert_eq!(bus.metrics().reconnects, 0);
        bus.shutdown().await.unwrap();
    })
    .await;
}

/// The ids of the bus's three connections (the publisher's command connection and publish
/// lane, the subscriber), once they are the server's only clients (a redis-cli connection of
/// an earlier call can linger a moment).
async fn bus_connections(server: &RedisServer) -> Vec<String> {
    let mut ids = Vec::new();
    let settled = wait_for(RECOVERY, || {
        let clients = server.clients();
        ids = clients
            .iter()
            .filter_map(|c| client_field(c, "id").map(str::to_owned))
            .collect();
        ids.sort();
        ids.len() == 3
    })
    .await;
    assert!(settled, "the bus does not hold three connections: {ids:?}");
    ids
}

/// The publisher's two connections.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Publisher {
    /// The multiplexed connection for every command but the batched publishes.
    Commands,
    /// The publish lane, which names itself `eventbus-publish`.
    Lane,
}

/// The id of one of the publisher's connections: of those not subscribed, the one named
/// `eventbus-publish` is the lane.
async fn publisher_id(server: &RedisServer, which: Publisher) -> String {
    bus_connections(server).await;
    let subscribers: Vec<String> = server
        .pubsub_clients()
        .iter()
        .filter_map(|c| client_field(c, "id").map(str::to_owned))
        .collect();
    let clients = server.clients();
    let found: Vec<&str> = clients
        .iter()
        .filter(|c| !subscribers.iter().any(|s| client_field(c, "id") == Some(s)))
        .filter(|c| {
            (client_field(c, "name") == Some("eventbus-publish")) == (which == Publisher::Lane)
        })
        .filter_map(|c| client_field(c, "id"))
        .collect();
    assert_eq!(found.len(), 1, "{which:?} among {clients:#?}");
    found[0].to_owned()
}

/// Waits until the watchdog has pinged each of `connections` since this call, a few times
/// over: their last command is PING and the server counted at least five PINGs per connection.
async fn watchdog_pinged(server: &RedisServer, connections: &[String], phase: &str) {
    let before = server.command_calls("ping");
    let wanted = before + 5 * connections.len() as u64;
    let mut last = Vec::new();
    let pinged = wait_for(RECOVERY, || {
        last = server.clients();
        let each_pinged = connections.iter().all(|id| {
            last.iter().any(|c| {
                client_field(c, "id") == Some(id.as_str()) && client_field(c, "cmd") == Some("ping")
            })
        });
        each_pinged && server.command_calls("ping") >= wanted
    })
    .await;
    assert!(
        pinged,
        "{phase}: the watchdog did not ping {connections:?} within {RECOVERY:?} \
         (PINGs: {before} before, {} now): {last:#?}",
        server.command_calls("ping")
    );
}
