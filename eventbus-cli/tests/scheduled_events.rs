//! `eventbus scheduled`: events a bus scheduled, listed by queue, shown and cancelled.

mod common;

use std::time::Duration;

use common::*;
use eventbus::redis::RedisOptions;
use eventbus::{Event, EventBus, ScheduleReceipt};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(durable)]
struct CartExpired {
    cart_id: u64,
}

/// A bus without a mover that scheduled two cart expiries, an hour and two hours ahead; the
/// first one's receipt.
async fn two_scheduled(url: &str) -> (EventBus, ScheduleReceipt) {
    let bus = EventBus::builder()
        .redis_options(RedisOptions::new().schedule_poll_interval(None))
        .connect(url)
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    let first = bus
        .publish_after(CartExpired { cart_id: 1 }, hour)
        .await
        .unwrap();
    bus.publish_after(CartExpired { cart_id: 2 }, hour * 2)
        .await
        .unwrap();
    (bus, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_the_schedule_queues() {
    let Some(server) = server() else { return };
    let url = server.url();
    let (bus, _) = two_scheduled(&url).await;
    let out = run(&url, &["monitor", "--once", "--json"]);
    assert_code(&out, 0);
    let snapshot = &json_lines(&out)[0];
    let queue = &snapshot["scheduled"][0];
    assert_eq!(queue["queue"], "events:cart_expired", "{snapshot}");
    assert_eq!(queue["waiting"], 2);
    let due_in = queue["next_due_in_ms"].as_i64().unwrap();
    assert!(due_in > 3_000_000 && due_in <= 3_600_000, "{due_in}");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_and_cancel() {
    let Some(server) = server() else { return };
    let url = server.url();
    let (bus, first) = two_scheduled(&url).await;

    let out = run(&url, &["scheduled", "list", "--json"]);
    assert_code(&out, 0);
    let queues = json_lines(&out);
    assert_eq!(queues.len(), 1, "{queues:?}");
    assert_eq!(queues[0]["queue"], "events:cart_expired");
    assert_eq!(queues[0]["waiting"], 2);

    let out = run(
        &url,
        &["scheduled", "list", "events:cart_expired", "--json"],
    );
    assert_code(&out, 0);
    let events = json_lines(&out);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["id"], first.id.as_str(), "first due first");
    assert_eq!(events[0]["route"], "appended to its stream");
    assert!(
        events[0]["payload"]
            .as_str()
            .unwrap()
            .contains("\"cart_id\":1")
    );

    let out = run(
        &url,
        &["scheduled", "show", "events:cart_expired", &first.id],
    );
    assert_code(&out, 0);
    assert!(
        text(&out.stdout).contains("channel  events:cart_expired"),
        "{}",
        text(&out.stdout)
    );

    let out = run(
        &url,
        &["scheduled", "cancel", "events:cart_expired", &first.id],
    );
    assert_code(&out, 0);
    assert_eq!(
        server.cli(&["ZCARD", "eventbus:schedule:{events:cart_expired}"]),
        "1"
    );
    let again = run(
        &url,
        &["scheduled", "cancel", "events:cart_expired", &first.id],
    );
    assert_code(&again, 4);
    assert!(
        text(&again.stderr).contains("sent already, was cancelled"),
        "{}",
        text(&again.stderr)
    );
    let out = run(
        &url,
        &["scheduled", "show", "events:cart_expired", &first.id],
    );
    assert_code(&out, 4);
    bus.shutdown().await.unwrap();
}
