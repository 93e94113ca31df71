//! The publish lane: on a single server reached without TLS, the publisher carries its
//! `PUBLISH`es and its `XADD`s on a connection of its own, named `eventbus-publish`,
//! set up as the URL says (user, password, database). These tests look at that connection
//! from the server's side.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::time::Duration;

use eventbus::redis::{LEAST_PRIVILEGE, RedisOptions};
use eventbus::{Event, EventBus, HandlerOptions};
use eventbus_suite::redis_server::{RedisServer, client_field};
use eventbus_suite::{Seen, bounded, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "lane_pinged")]
struct Pinged {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "lane_appended", durable)]
struct Appended {
    n: u64,
}

const WAIT: Duration = Duration::from_secs(10);
const N: u64 = 200;

/// A bus handling both types, each handler recording what it got; no watchdog, so that the
/// last command on each connection is the bus's own.
async fn bus(url: &str) -> (EventBus, Seen<u64>, Seen<u64>) {
    let (pinged, appended) = (Seen::new(), Seen::new());
    let (p, a) = (pinged.clone(), appended.clone());
    let bus = EventBus::builder()
        .service("lane")
        .redis_options(RedisOptions::new().watchdog_interval(None))
        .handler(move |e: Pinged| {
            let p = p.clone();
            async move { p.push(e.n) }
        })
        .handler_with(HandlerOptions::new().name("count"), move |e: Appended| {
            let a = a.clone();
            async move { a.push(e.n) }
        })
        .connect(url)
        .await
        .expect("connect");
    bus.ready(WAIT).await.expect("ready");
    (bus, pinged, appended)
}

/// The `CLIENT LIST` line of the connection named `eventbus-publish`, if there is one.
fn lane(server: &RedisServer) -> Option<String> {
    server
        .clients()
        .into_iter()
        .find(|c| client_field(c, "name") == Some("eventbus-publish"))
}

/// Publishes `N` of each type, all at once; every publish must succeed.
async fn publish_all_of_them(bus: &EventBus) {
    let pings = futures_util::future::join_all((0..N).map(|n| bus.publish(Pinged { n })));
    for receipt in pings.await {
        assert_eq!(receipt.expect("publish").receivers, 1);
    }
    let appends = futures_util::future::join_all((0..N).map(|n| bus.publish(Appended { n })));
    for receipt in appends.await {
        receipt.expect("durable publish");
    }
}

/// Waits until both handlers got `N` events each.
async fn all_handled(pinged: &Seen<u64>, appended: &Seen<u64>) {
    let both = || pinged.len() == N as usize && appended.len() == N as usize;
    assert!(
        wait_for(WAIT, both).await,
        "handled {} published and {} appended of {N} each",
        pinged.len(),
        appended.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_appends_go_on_the_lane_in_the_url_s_database() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let (bus, pinged, appended) = bus(&format!("{}/5", server.url())).await;
        let before = lane(&server).expect("a connection named eventbus-publish");
        let named = server
            .clients()
            .into_iter()
            .filter(|c| client_field(c, "name") == Some("eventbus-publish"))
            .count();
        assert_eq!(named, 1, "one lane: the group's reader has none");
        assert_eq!(client_field(&before, "db"), Some("5"), "{before}");

        publish_all_of_them(&bus).await;
        all_handled(&pinged, &appended).await;
        let mut got = appended.snapshot();
        got.sort_unstable();
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "each appended once");

        let after = lane(&server).expect("the lane is still there");
        assert_eq!(client_field(&after, "id"), client_field(&before, "id"));
        assert_eq!(client_field(&after, "cmd"), Some("xadd"), "{after}");
        let stream = "events:lane_appended";
        assert_eq!(server.cli(&["-n", "5", "XLEN", stream]), N.to_string());
        assert_eq!(server.cli(&["-n", "0", "XLEN", stream]), "0");
        bus.shutdown().await.unwrap();
        assert!(
            wait_for(WAIT, || lane(&server).is_none()).await,
            "shutdown closes the lane"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_denied_client_setname_still_publishes_on_an_unnamed_lane() {
    let Some(server) = RedisServer::builder()
        .acl_user_with("shop", "pw", &format!("{LEAST_PRIVILEGE} -client"))
        .start_or_skip()
    else {
        return;
    };
    bounded(async {
        let (bus, pinged, appended) = bus(&server.url_for_user("shop", "pw")).await;
        publish_all_of_them(&bus).await;
        all_handled(&pinged, &appended).await;
        assert_eq!(lane(&server), None, "CLIENT SETNAME was denied");
        let clients = server.clients();
        let appending: Vec<&String> = clients
            .iter()
            .filter(|c| client_field(c, "cmd") == Some("xadd"))
            .collect();
        assert_eq!(appending.len(), 1, "the lane, unnamed: {clients:#?}");
        assert_eq!(client_field(appending[0], "user"), Some("shop"));
        assert_eq!(client_field(appending[0], "name"), Some(""));
        bus.shutdown().await.unwrap();
    })
    .await;
}
