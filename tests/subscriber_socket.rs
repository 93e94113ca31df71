//! The subscriber's own connection: on a single server reached without TLS the bus reads its
//! subscription by hand, on a connection named `eventbus-subscribe`. These tests look at it
//! from the server's side and feed it what a reader by hand can get wrong: a message far
//! larger than a read, payloads holding `\r\n`, messages arriving between the confirmations
//! of a subscription change, a subscription the server refuses.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::time::Duration;

use eventbus::{Event, EventBus, SubscribeErrorKind};
use eventbus_suite::redis_server::{RedisServer, client_field};
use eventbus_suite::{Ping, Seen, bounded, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "socket_note")]
struct Note {
    n: u64,
    text: String,
}

const WAIT: Duration = Duration::from_secs(10);

/// A bus recording every `Note` it handles.
async fn noting_bus(url: &str) -> (EventBus, Seen<Note>) {
    let notes = Seen::new();
    let seen = notes.clone();
    let bus = EventBus::builder()
        .service("socket")
        .handler(move |note: Note| {
            let seen = seen.clone();
            async move { seen.push(note) }
        })
        .connect(url)
        .await
        .expect("connect");
    bus.ready(WAIT).await.expect("ready");
    (bus, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_awkward_payloads_arrive_whole_and_in_order() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, notes) = noting_bus(&server.url()).await;
        let pubsub = server.pubsub_clients();
        assert_eq!(pubsub.len(), 1, "{pubsub:?}");
        assert_eq!(client_field(&pubsub[0], "name"), Some("eventbus-subscribe"));

        // Near the default largest message (1 MiB): many reads long.
        let big = "x".repeat(1000 * 1000);
        let awkward = "a\r\nb\r\n*3\r\n$7\r\nmessage\r\n".to_owned();
        let sent: Vec<Note> = (0..300)
            .map(|n| Note {
                n,
                text: match n % 100 {
                    0 => big.clone(),
                    1 => awkward.clone(),
                    _ => format!("note {n}"),
                },
            })
            .collect();
        for note in &sent {
            bus.publish(note.clone()).await.expect("publish");
        }
        assert!(
            wait_for(WAIT, || notes.len() >= sent.len()).await,
            "{} of {} handled",
            notes.len(),
            sent.len()
        );
        assert_eq!(notes.snapshot(), sent, "each once, whole, in order");
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_while_messages_flow_loses_none() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, notes) = noting_bus(&server.url()).await;
        let flood = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..3000 {
                    let text = String::new();
                    bus.publish(Note { n, text }).await.expect("publish");
                }
            })
        };
        // Subscription changes answered while notes keep arriving: each confirmation must
        // reach its command, each note the handler.
        let pings = Seen::new();
        for round in 0..20u64 {
            let seen = pings.clone();
            let sub = bus
                .subscribe(move |p: Ping| {
                    let seen = seen.clone();
                    async move { seen.push(p.n) }
                })
                .await
                .expect("subscribe while notes flow");
            let receipt = bus.publish(Ping { n: round }).await.expect("publish");
            assert_eq!(receipt.receivers, 1, "round {round}");
            assert!(wait_for(WAIT, || pings.len() as u64 > round).await);
            sub.unsubscribe().await.expect("unsubscribe");
        }
        flood.await.unwrap();
        assert!(
            wait_for(WAIT, || notes.len() == 3000).await,
            "{}",
            notes.len()
        );
        let order: Vec<u64> = notes.snapshot().iter().map(|n| n.n).collect();
        assert_eq!(order, (0..3000).collect::<Vec<_>>());
        assert_eq!(pings.snapshot(), (0..20).collect::<Vec<_>>());
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_is_an_error_and_the_connection_stays() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    server.cli(&[
        "ACL",
        "SETUSER",
        "notes",
        "on",
        ">pw",
        "+@all",
        "resetchannels",
        "&events:socket_note",
    ]);
    bounded(async {
        let url = server.url_for_user("notes", "pw");
        let (bus, notes) = noting_bus(&url).await;
        let refused = bus.subscribe(|_: Ping| async {}).await.unwrap_err();
        assert_eq!(refused.kind(), SubscribeErrorKind::Auth, "{refused}");
        let text = refused.to_string();
        assert!(text.contains("may not use this channel"), "{text}");
        let note = Note {
            n: 1,
            text: "after".into(),
        };
        bus.publish(note.clone()).await.expect("publish");
        assert!(wait_for(WAIT, || notes.len() == 1).await);
        assert_eq!(notes.snapshot(), vec![note]);
        bus.shutdown().await.unwrap();
    })
    .await;
}
