//! Readiness and health: `ready()` confirms every subscription, `health()` tells each
//! connection's state, for readiness probes.

use std::time::Duration;

use eventbus::{ConnectionState, Event, EventBus, SubscribeErrorKind};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "probe_tick")]
struct Tick {
    n: u64,
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn memory_is_ready_at_once() {
    let bus = EventBus::builder()
        .handler(|_: Tick| async {})
        .connect("memory://")
        .await
        .unwrap();
    bus.ready(Duration::from_millis(10)).await.unwrap();
    assert!(bus.health().is_up(), "{:?}", bus.health());
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_readiness_follows_the_server() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let options = eventbus::redis::RedisOptions::default()
        .watchdog_interval(Some(Duration::from_millis(200)))
        .response_timeout(Duration::from_millis(500));
    let bus = EventBus::builder()
        .redis_options(options)
        .handler(|_: Tick| async {})
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    let health = bus.health();
    assert!(health.is_up(), "{health:?}");
    assert_eq!(
        health.connections.len(),
        2,
        "publisher and subscriber: {health:?}"
    );

    server.kill();
    assert!(
        wait_for(WAIT, || {
            bus.health()
                .connections
                .iter()
                .any(|c| c.role == "subscriber" && c.state == ConnectionState::Down)
        })
        .await,
        "the subscriber is seen down: {:?}",
        bus.health()
    );
    let down = bus.health();
    let sub = down
        .connections
        .iter()
        .find(|c| c.role == "subscriber")
        .unwrap();
    assert!(sub.last_error.is_some(), "{down:?}");
    let err = bus.ready(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err.kind(), SubscribeErrorKind::Disconnected, "{err}");
    assert!(err.to_string().contains("not ready"), "{err}");

    server.restart();
    bus.ready(WAIT).await.unwrap();
    assert!(
        wait_for(WAIT, || bus.health().is_up()).await,
        "{:?}",
        bus.health()
    );
    bus.shutdown().await.unwrap();
}
