//! The Redis transport against a real redis-server: connection errors, publishing,
//! subscriptions kept in step with the handlers, one subscriber connection per bus,
//! pipelining, monitoring, ACL users, Unix sockets and dead letters.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{
    ConnectErrorKind, Envelope, Event, EventBus, HandlerOptions, Message, PublishErrorKind,
    RetryPolicy, Topic,
};
use eventbus_suite::redis_server::{RedisServer, client_field};
use eventbus_suite::{Ping, bounded, fast, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Pong {
    n: u64,
}

/// How long a condition on the server may take to come true.
const WAIT: Duration = Duration::from_secs(5);

/// Waits until `check` holds, for at most [`WAIT`].
async fn eventually(what: &str, check: impl FnMut() -> bool) {
    assert!(wait_for(WAIT, check).await, "not within {WAIT:?}: {what}");
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("nothing received within 5s")
        .expect("the channel closed")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bus whose `Ping` handler forwards what it receives.
async fn ping_bus(url: &str) -> (EventBus, mpsc::UnboundedReceiver<Ping>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bus = EventBus::builder()
        .service("test")
        .redis_options(fast())
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

fn numsub(server: &RedisServer, channel: &str) -> u64 {
    let out = server.cli(&["PUBSUB", "NUMSUB", channel]);
    out.lines().nth(1).unwrap_or("0").trim().parse().unwrap()
}

fn numpat(server: &RedisServer) -> u64 {
    server.cli(&["PUBSUB", "NUMPAT"]).parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Connecting

#[tokio::test]
async fn unreachable_server_fails_fast_naming_host_and_port() {
    bounded(async {
        let port = free_port();
        let url = format!("redis://app:hunter2@127.0.0.1:{port}/0");
        let start = Instant::now();
        let err = EventBus::builder()
            .redis_options(fast())
            .connect(&url)
            .await
            .expect_err("nothing listens there");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        // The cause follows in the chain, named once.
        let cause = std::error::Error::source(&err)
            .expect("a cause")
            .to_string();
        assert!(cause.to_lowercase().contains("refused"), "{cause}");
        assert!(!text.contains(&cause), "{text} repeats {cause}");
    })
    .await;
}

#[tokio::test]
async fn a_hung_server_fails_connect_with_timeout() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        server.pause_process();
        let start = Instant::now();
        let err = EventBus::builder()
            .redis_options(fast())
            .connect(&server.url())
            .await
            .expect_err("the server is stopped");
        server.resume_process();
        assert_eq!(err.kind(), ConnectErrorKind::Timeout, "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_or_missing_password_is_an_auth_error_without_the_password() {
    let Some(server) = RedisServer::builder().password("right-pw").start_or_skip() else {
        return;
    };
    bounded(async {
        let url = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
        let err = EventBus::builder()
            .redis_options(fast())
            .connect(&url)
            .await
            .expect_err("wrong password");
        assert_eq!(err.kind(), ConnectErrorKind::Auth, "{err}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("wrong-pw"), "{text}");
            assert!(!text.contains("right-pw"), "{text}");
            assert!(
                text.contains(&format!("127.0.0.1:{}", server.port())),
                "{text}"
            );
        }

        let err = EventBus::builder()
            .redis_options(fast())
            .connect(&server.url())
            .await
            .expect_err("no password");
        assert_eq!(err.kind(), ConnectErrorKind::Auth, "{err}");
        assert!(err.to_string().contains("NOAUTH"), "{err}");

        let bus = EventBus::builder()
            .redis_options(fast())
            .connect(&server.url_with_password())
            .await
            .expect("right password");
        let debug = format!("{bus:?}");
        assert!(!debug.contains("right-pw"), "{debug}");
        bus.publish(Ping { n: 1 }).await.unwrap();
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_urls_are_invalid_url_errors_without_the_password() {
    bounded(async {
        for url in [
            "redis://:s3cret@127.0.0.1:6379/not-a-db",
            "redis://:s3cret@",
            "redis+unix://",
        ] {
            let err = EventBus::builder().connect(url).await.expect_err("bad URL");
            assert_eq!(err.kind(), ConnectErrorKind::InvalidUrl, "{url}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    })
    .await;
}

#[tokio::test]
async fn acl_users_authenticate_with_user_and_password() {
    let Some(server) = RedisServer::builder()
        .acl_user("orders", "orders-pw")
        .start_or_skip()
    else {
        return;
    };
    bounded(async {
        let (bus, mut rx) = ping_bus(&server.url_for_user("orders", "orders-pw")).await;
        let clients = server.cli(&["CLIENT", "LIST"]);
        assert!(clients.contains("user=orders"), "{clients}");
        bus.publish(Ping { n: 7 }).await.unwrap();
        assert_eq!(recv(&mut rx).await, Ping { n: 7 });

        let err = EventBus::builder()
            .redis_options(fast())
            .connect(&server.url_for_user("orders", "nope"))
            .await
            .expect_err("wrong password");
        assert_eq!(err.kind(), ConnectErrorKind::Auth, "{err}");
        assert!(!err.to_string().contains("nope"), "{err}");
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unix_sockets_work() {
    let Some(server) = RedisServer::builder().unix_socket(true).start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, mut rx) = ping_bus(&server.unix_url()).await;
        let receipt = bus.publish(Ping { n: 3 }).await.unwrap();
        assert_eq!(receipt.receivers, 1);
        assert_eq!(recv(&mut rx).await, Ping { n: 3 });
        let clients = server.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
        assert!(
            clients.contains("redis.sock"),
            "the subscriber uses the socket: {clients}"
        );
        bus.shutdown().await.unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Publishing and subscribing

#[tokio::test]
async fn receivers_count_is_what_publish_returned() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (a, mut rx_a) = ping_bus(&server.url()).await;
        let publisher = EventBus::builder()
            .redis_options(fast())
            .connect(&server.url())
            .await
            .unwrap();
        let receipt = publisher.publish(Ping { n: 1 }).await.unwrap();
        assert_eq!(receipt.receivers, 1);
        assert_eq!(receipt.channel, "events:ping");
        assert_eq!(recv(&mut rx_a).await, Ping { n: 1 });

        let (b, mut rx_b) = ping_bus(&server.url()).await;
        assert_eq!(numsub(&server, "events:ping"), 2);
        let receipt = publisher.publish(Ping { n: 2 }).await.unwrap();
        assert_eq!(receipt.receivers, 2);
        assert_eq!(recv(&mut rx_a).await, Ping { n: 2 });
        assert_eq!(recv(&mut rx_b).await, Ping { n: 2 });
        // A raw PUBLISH from another client counts the same subscribers.
        assert_eq!(
            server.cli(&["PUBLISH", "events:ping", "not an envelope"]),
            "2"
        );

        let receipt = publisher.publish(Pong { n: 1 }).await.unwrap();
        assert_eq!(receipt.receivers, 0, "nobody handles pong");
        for bus in [a, b, publisher] {
            bus.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn subscriptions_follow_the_handlers() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let bus = EventBus::builder()
            .redis_options(fast())
            .connect(&server.url())
            .await
            .unwrap();
        assert!(
            server.pubsub_clients().is_empty(),
            "a publish-only bus holds no subscriber"
        );
        assert_eq!(numsub(&server, "events:ping"), 0);

        let first = bus.subscribe(|_: Ping| async {}).await.unwrap();
        let second = bus.subscribe(|_: Envelope<Ping>| async {}).await.unwrap();
        assert_eq!(
            numsub(&server, "events:ping"),
            1,
            "one SUBSCRIBE per channel"
        );
        let pattern = bus
            .subscribe_with(
                HandlerOptions::new().topic(Topic::pattern("events:*")),
                |_: Envelope<serde_json::Value>| async {},
            )
            .await
            .unwrap();
        assert_eq!(numpat(&server), 1);

        drop(first);
        assert_eq!(
            numsub(&server, "events:ping"),
            1,
            "a handler still holds it"
        );
        drop(second);
        eventually("the last Ping handler's channel is unsubscribed", || {
            numsub(&server, "events:ping") == 0
        })
        .await;
        // The second drop's UNSUBSCRIBE came after anything the first one sent.
        assert_eq!(
            server.command_calls("unsubscribe"),
            1,
            "only the last Ping handler's drop unsubscribed"
        );
        assert_eq!(numpat(&server), 1);
        pattern.unsubscribe().await.unwrap();
        assert_eq!(numpat(&server), 0, "unsubscribe() waits for PUNSUBSCRIBE");

        // Subscribing again after everything was dropped works on the same connection.
        let again = bus.subscribe(|_: Ping| async {}).await.unwrap();
        assert_eq!(numsub(&server, "events:ping"), 1);
        assert_eq!(server.pubsub_clients().len(), 1);
        again.unsubscribe().await.unwrap();
        assert_eq!(numsub(&server, "events:ping"), 0);
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn pattern_subscriptions_receive_pmessages() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bus = EventBus::builder()
            .redis_options(fast())
            .handler_on(Topic::pattern("events:p*"), move |m: Message| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(m);
                }
            })
            .connect(&server.url())
            .await
            .unwrap();
        let receipt = bus.publish(Ping { n: 5 }).await.unwrap();
        assert_eq!(receipt.receivers, 1);
        let m = recv(&mut rx).await;
        assert_eq!(&*m.channel, "events:ping");
        assert_eq!(m.pattern.as_deref(), Some("events:p*"));
        assert!(m.text().unwrap().contains("\"ping\""), "{m:?}");

        bus.publish(Pong { n: 6 }).await.unwrap();
        let m = recv(&mut rx).await;
        assert_eq!(&*m.channel, "events:pong");

        // Binary payloads arrive byte for byte.
        let bytes: Vec<u8> = (0..=255).collect();
        bus.publish_raw("events:pbinary", bytes.clone())
            .await
            .unwrap();
        let m = recv(&mut rx).await;
        assert_eq!(&m.payload[..], &bytes[..]);
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn one_subscriber_connection_per_bus() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let mut builder = EventBus::builder().redis_options(fast());
        for i in 0..20 {
            builder =
                builder.handler_on(Topic::channel(format!("chan:{i}")), |_: Message| async {});
        }
        for i in 0..5 {
            builder =
                builder.handler_on(Topic::pattern(format!("pat:{i}:*")), |_: Message| async {});
        }
        let bus = builder.connect(&server.url()).await.unwrap();
        let extra = bus.subscribe(|_: Ping| async {}).await.unwrap();

        let clients = server.pubsub_clients();
        assert_eq!(clients.len(), 1, "{clients:#?}");
        assert_eq!(
            client_field(&clients[0], "sub"),
            Some("21"),
            "{}",
            clients[0]
        );
        assert_eq!(
            client_field(&clients[0], "psub"),
            Some("5"),
            "{}",
            clients[0]
        );
        // The publisher (its command connection and its publish lane) and the subscriber.
        eventually("the bus holds three connections", || {
            server.clients().len() == 3
        })
        .await;
        drop(extra);
        bus.shutdown().await.unwrap();
        eventually("shutdown closes every connection", || {
            server.clients().is_empty()
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_pipeline_on_one_connection() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        const N: u64 = 10_000;
        let received = Arc::new(AtomicU64::new(0));
        let sum = Arc::new(AtomicU64::new(0));
        let (r, s) = (received.clone(), sum.clone());
        // Generous limits: this is about pipelining, not deadlines, and a loaded machine runs
        // 10k debug-build publishes slowly.
        let options = RedisOptions::new()
            .response_timeout(Duration::from_secs(10))
            .publish_deadline(Duration::from_secs(30));
        let bus = EventBus::builder()
            .redis_options(options)
            .handler_with(
                HandlerOptions::new().queue_capacity(N as usize),
                move |e: Ping| {
                    let (r, s) = (r.clone(), s.clone());
                    async move {
                        r.fetch_add(1, Ordering::Relaxed);
                        s.fetch_add(e.n, Ordering::Relaxed);
                    }
                },
            )
            .connect(&server.url())
            .await
            .unwrap();
        let before: u64 = stat(&server, "total_connections_received");
        let start = Instant::now();
        let results = futures_util::future::join_all((0..N).map(|n| bus.publish(Ping { n }))).await;
        let took = start.elapsed();
        for r in &results {
            assert_eq!(r.as_ref().expect("publish").receivers, 1);
        }
        assert!(
            wait_for(Duration::from_secs(30), || received.load(Ordering::Relaxed)
                == N)
            .await,
            "not every event was handled: {} of {N}",
            received.load(Ordering::Relaxed)
        );
        assert_eq!(sum.load(Ordering::Relaxed), N * (N - 1) / 2);
        let after: u64 = stat(&server, "total_connections_received");
        // Only the redis-cli calls of this test connected; the bus opened nothing new.
        assert_eq!(after - before, 1, "no connection per publish");
        eprintln!("{N} concurrent publishes took {took:?}");
        bus.shutdown().await.unwrap();
    })
    .await;
}

fn stat(server: &RedisServer, name: &str) -> u64 {
    server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Monitoring

#[tokio::test]
async fn monitoring_reports_what_the_server_says() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let bus = EventBus::builder()
            .redis_options(fast())
            .handler(|_: Ping| async {})
            .handler(|_: Pong| async {})
            .handler_on(Topic::pattern("events:*"), |_: Message| async {})
            .connect(&server.url())
            .await
            .unwrap();
        let (other, _rx) = ping_bus(&server.url()).await;

        let rtt = bus.ping().await.unwrap();
        assert!(rtt < Duration::from_secs(1), "{rtt:?}");
        assert_eq!(
            bus.channels(None).await.unwrap(),
            vec!["events:ping".to_owned(), "events:pong".to_owned()]
        );
        assert_eq!(
            bus.channels(Some("*:po*")).await.unwrap(),
            vec!["events:pong".to_owned()]
        );
        assert_eq!(
            bus.numsub(&["events:ping", "events:pong", "nothing"])
                .await
                .unwrap(),
            vec![
                ("events:ping".to_owned(), 2),
                ("events:pong".to_owned(), 1),
                ("nothing".to_owned(), 0)
            ]
        );
        assert_eq!(bus.numsub(&[] as &[&str]).await.unwrap(), vec![]);
        assert_eq!(bus.numpat().await.unwrap(), 1);
        other.shutdown().await.unwrap();
        bus.shutdown().await.unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Dead letters

#[tokio::test]
async fn dead_letters_round_trip_through_a_stream() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let bus = EventBus::builder()
            .redis_options(fast())
            .handler_with(
                HandlerOptions::new()
                    .name("picky")
                    .retry(
                        RetryPolicy::attempts(2)
                            .backoff(Duration::from_millis(10), Duration::from_millis(10)),
                    )
                    .dead_letter(true),
                move |e: Ping| {
                    let c = c.clone();
                    async move {
                        let call = c.fetch_add(1, Ordering::Relaxed);
                        // Fails both attempts of the first event; succeeds on the replay.
                        if call < 2 {
                            Err(format!("refusing ping {}", e.n))
                        } else {
                            Ok(())
                        }
                    }
                },
            )
            .connect(&server.url())
            .await
            .unwrap();
        bus.publish(Ping { n: 42 }).await.unwrap();
        eventually("the dead letter is stored", || {
            server.cli(&["XLEN", "eventbus:dead:ping"]) == "1"
        })
        .await;
        let fields = server.cli(&["XRANGE", "eventbus:dead:ping", "-", "+"]);
        for f in [
            "handler",
            "picky",
            "error",
            "attempts",
            "channel",
            "events:ping",
            "payload",
        ] {
            assert!(fields.contains(f), "{f} missing from {fields}");
        }

        let letters = bus.dead_letters("ping", 10).await.unwrap();
        assert_eq!(letters.len(), 1, "{letters:?}");
        let letter = &letters[0];
        assert_eq!(letter.event_type, "ping");
        assert_eq!(letter.handler, "picky");
        assert_eq!(letter.channel, "events:ping");
        assert_eq!(letter.attempts, 2);
        assert!(
            letter.error.contains("refusing ping 42"),
            "{}",
            letter.error
        );
        assert!(
            std::str::from_utf8(&letter.payload)
                .unwrap()
                .contains("\"n\":42")
        );
        assert!(
            letter.entry_id.contains('-'),
            "a stream id: {}",
            letter.entry_id
        );

        assert_eq!(bus.replay_dead_letter(letter).await.unwrap().receivers, 1);
        eventually("the replay is handled", || {
            calls.load(Ordering::Relaxed) == 3
        })
        .await;
        assert_eq!(server.cli(&["XLEN", "eventbus:dead:ping"]), "0");
        assert!(bus.dead_letters("ping", 10).await.unwrap().is_empty());
        assert!(bus.dead_letters("never-seen", 10).await.unwrap().is_empty());
        bus.shutdown().await.unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Closing

#[tokio::test]
async fn shutdown_unsubscribes_and_is_idempotent() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, _rx) = ping_bus(&server.url()).await;
        assert_eq!(numsub(&server, "events:ping"), 1);
        bus.shutdown().await.unwrap();
        bus.shutdown().await.unwrap();
        eventually("the subscription is gone", || {
            numsub(&server, "events:ping") == 0
        })
        .await;
        let err = bus.publish(Ping { n: 1 }).await.unwrap_err();
        assert_eq!(err.kind(), PublishErrorKind::Closed);
    })
    .await;
}

#[tokio::test]
async fn dropping_the_bus_closes_its_connections() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, _rx) = ping_bus(&server.url()).await;
        eventually(
            "the publisher, its lane and the subscriber are connected",
            || server.clients().len() == 3,
        )
        .await;
        drop(bus);
        eventually("every connection is closed", || server.clients().is_empty()).await;
    })
    .await;
}
