//! A publisher flooding a subscribed channel with malformed and oversized messages at line
//! rate cannot make a consumer use unbounded memory: each is counted and dropped (bounded by
//! `max_message_size` and the handler queues), and the next valid event is delivered.

use std::time::Duration;

use eventbus::{Event, EventBus};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};

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

/// Waits until `count` reaches `target` or has not moved for half a second (messages Redis
/// dropped with a cut-off subscriber never arrive); returns it.
async fn quiet(count: &impl Fn() -> u64, target: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = (count(), tokio::time::Instant::now());
    loop {
        let now = count();
        if now >= target || tokio::time::Instant::now() > deadline {
            return now;
        }
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(500) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    tokio::join!(flood(&url, garbage, GARBAGE), flood(&url, &huge, HUGE));
    let first = quiet(&rejected, all).await;
    bus.ready(WAIT).await.unwrap();
    let before = rss();
    tokio::join!(flood(&url, garbage, GARBAGE), flood(&url, &huge, HUGE));
    let counted = quiet(&rejected, first + all).await == first + all;
    let grown = rss().saturating_sub(before);
    let reconnects = bus.metrics().reconnects;
    // Either every message was read and rejected, or Redis cut the subscriber off for its
    // output buffer (reported as a reconnect): never unbounded growth.
    assert!(
        counted || reconnects > 0,
        "{} of {all} rejected",
        rejected()
    );
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
