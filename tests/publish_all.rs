//! `publish_all`: many events of one type in one call, on every transport: all delivered in
//! order with a receipt each, durable ones appended with increasing entry ids, and a batch
//! with a bad event refused before anything is sent.

use std::time::Duration;

use eventbus::{Event, EventBus, PublishErrorKind};
use eventbus_suite::{Seen, TestEnv, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "tick_recorded")]
struct TickRecorded {
    n: u64,
    note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "ledger_posted", durable)]
struct LedgerPosted {
    n: u64,
}

const N: u64 = 2000;
const WAIT: Duration = Duration::from_secs(20);

eventbus_suite::on_every_transport!(
    a_batch_is_delivered_in_order_with_a_receipt_each,
    a_durable_batch_is_appended_in_order,
    a_batch_with_a_bad_event_sends_nothing,
);

async fn a_batch_is_delivered_in_order_with_a_receipt_each(env: TestEnv) {
    let seen = Seen::new();
    let seen2 = seen.clone();
    let bus = EventBus::builder()
        .handler(move |e: TickRecorded| {
            let seen = seen2.clone();
            async move { seen.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    let events = (0..N).map(|n| TickRecorded {
        n,
        note: String::new(),
    });
    let receipts = bus.publish_all(events).await.unwrap();
    assert_eq!(receipts.len(), N as usize);
    assert!(
        receipts
            .iter()
            .all(|r| r.receivers == 1 && r.channel == "events:tick_recorded")
    );
    let ids: std::collections::HashSet<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), N as usize, "one id each");
    assert!(
        wait_for(WAIT, || seen.len() == N as usize).await,
        "{}",
        seen.len()
    );
    assert_eq!(seen.snapshot(), (0..N).collect::<Vec<_>>());
    let m = bus.metrics();
    assert_eq!(m.published, N);
    assert_eq!(m.event_types["tick_recorded"].published, N);
    assert!(
        bus.publish_all(Vec::<TickRecorded>::new())
            .await
            .unwrap()
            .is_empty()
    );
    bus.shutdown().await.unwrap();
}

async fn a_durable_batch_is_appended_in_order(env: TestEnv) {
    let seen = Seen::new();
    let seen2 = seen.clone();
    let bus = EventBus::builder()
        .handler(move |e: LedgerPosted| {
            let seen = seen2.clone();
            async move { seen.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    let receipts = bus
        .publish_all((0..N).map(|n| LedgerPosted { n }))
        .await
        .unwrap();
    let entries: Vec<&str> = receipts
        .iter()
        .map(|r| r.entry_id.as_deref().unwrap())
        .collect();
    let parsed: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| {
            let (ms, seq) = e.split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "entry ids increase");
    assert!(
        wait_for(WAIT, || seen.len() == N as usize).await,
        "{}",
        seen.len()
    );
    assert_eq!(seen.snapshot(), (0..N).collect::<Vec<_>>());
    bus.shutdown().await.unwrap();
}

async fn a_batch_with_a_bad_event_sends_nothing(env: TestEnv) {
    let seen = Seen::new();
    let seen2 = seen.clone();
    let bus = EventBus::builder()
        .max_message_size(4096)
        .handler(move |e: TickRecorded| {
            let seen = seen2.clone();
            async move { seen.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    bus.ready(WAIT).await.unwrap();
    let huge = "x".repeat(10_000);
    let events = (0..10).map(|n| TickRecorded {
        n,
        note: if n == 7 { huge.clone() } else { String::new() },
    });
    let err = bus.publish_all(events).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::TooLarge, "{err}");
    bus.publish(TickRecorded {
        n: 99,
        note: String::new(),
    })
    .await
    .unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    assert_eq!(seen.snapshot(), [99], "none of the refused batch was sent");
    bus.shutdown().await.unwrap();
}
