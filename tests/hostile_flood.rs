//! A publisher flooding a subscribed channel with malformed and oversized messages at line
//! rate cannot make a consumer use unbounded memory: each is counted and dropped (bounded by
//! `max_message_size` and the handler queues), and the next valid event is delivered.

use std::time::Duration;

use eventbus::{ConnectionEvent, Event, EventBus};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "price_set")]
struct PriceSet {
    sku: u64,
}

const GARBAGE: u64 = 100_000;
const HUGE: u64 = 200;
const HUGE_SIZE: usize = 2 << 20;
const WAIT: Duration = Duration::from_secs(60);

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Publishes `n` copies of `payload` on the channel, pipelined (64 small or 4 huge at a time).
async fn flood(url: &str, payload: &[u8], n: u64) {
    let client = redis::Client::open(url).unwrap();
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(if payload.len() > 1 << 20 { 4 } else { 64 });
        let mut pipe = redis::pipe();
        for _ in 0..batch {
            pipe.cmd("PUBLISH")
                .arg("events:price_set")
                .arg(payload)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
        sent += batch;
    }
}

/// Whether the subscriber connection was reported lost since the last call: Redis cuts off
/// a subscriber whose output buffer passes its limit, and the messages it held never arrive.
fn cut_off(events: &mut broadcast::Receiver<ConnectionEvent>) -> bool {
    let mut cut = false;
    loop {
        match events.try_recv() {
            Ok(ConnectionEvent::Disconnected {
                role: "subscriber", ..
            }) => cut = true,
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return cut,
        }
    }
}

/// Waits until `count` reaches `target`, or the subscriber was cut off (then until its
/// reconnection); returns whether every message was counted.
async fn settled(
    count: impl Fn() -> u64,
    target: u64,
    bus: &EventBus,
    events: &mut broadcast::Receiver<ConnectionEvent>,
) -> bool {
    let mut cut = false;
    let done = wait_for(WAIT, || {
        cut |= cut_off(events);
        count() >= target || cut
    })
    .await;
    assert!(done, "{} of {target} rejected, and no cut-off", count());
    if cut {
        bus.ready(WAIT).await.unwrap();
    }
    count() >= target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_messages_is_dropped_in_bounded_memory() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let seen = Seen::new();
    let seen2 = seen.clone();
    let bus = EventBus::builder()
        .on_error(|_| {})
        .handler(move |e: PriceSet| {
            let seen = seen2.clone();
            async move { seen.push(e.sku) }
        })
        .connect(&url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    let garbage = br#"{"type":"price_set","data":{"sku":"#;
    let huge = vec![b'x'; HUGE_SIZE];
    let rejected = || bus.metrics().decode_errors;
    let all = GARBAGE + HUGE;
    // A first flood brings every buffer and the allocator to their working size (the
    // flooding client in this process included); a second one must not grow memory further.
    let mut events = bus.connection_events();
    tokio::join!(flood(&url, garbage, GARBAGE), flood(&url, &huge, HUGE));
    settled(&rejected, all, &bus, &mut events).await;
    let first = rejected();
    let before = rss();
    // Either every message is read and rejected, or Redis cuts the subscriber off for its
    // output buffer (reported, then reconnected): never unbounded growth.
    tokio::join!(flood(&url, garbage, GARBAGE), flood(&url, &huge, HUGE));
    settled(&rejected, first + all, &bus, &mut events).await;
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "memory grew by {} MiB during a second {} MiB flood",
        grown >> 20,
        (HUGE as usize * HUGE_SIZE) >> 20
    );
    assert!(seen.is_empty(), "no bad message reached the handler");
    bus.ready(WAIT).await.unwrap();
    bus.publish(PriceSet { sku: 7 }).await.unwrap();
    assert!(
        wait_for(WAIT, || seen.snapshot() == [7]).await,
        "still delivering"
    );
    bus.shutdown().await.unwrap();
}
