//! What a settle reports for a service with a retry policy: an event whose first attempt failed
//! and whose retry passed did not fail, so the service can assert clean; the failed attempts
//! stay available, and an event that failed every attempt is one failure.

use std::time::Duration;

use eventbus::testing::TestBus;
use eventbus::{DeliveryInfo, Envelope, Event, EventBus, Failure, HandlerOptions, RetryPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "parcel_scanned")]
struct ParcelScanned {
    parcel: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "parcel_weighed", durable)]
struct ParcelWeighed {
    parcel: u64,
}

/// Fails the first attempt of every parcel, and every attempt of parcel 0.
fn check(parcel: u64, info: &DeliveryInfo) -> anyhow::Result<()> {
    anyhow::ensure!(parcel != 0, "parcel 0 is not in the manifest");
    anyhow::ensure!(info.attempt > 1, "the scanner was busy");
    Ok(())
}

async fn track(e: ParcelScanned, info: DeliveryInfo) -> anyhow::Result<()> {
    check(e.parcel, &info)
}

async fn weigh(e: ParcelWeighed, info: DeliveryInfo) -> anyhow::Result<()> {
    check(e.parcel, &info)
}

fn retried() -> HandlerOptions {
    HandlerOptions::new()
        .retry(RetryPolicy::attempts(3).backoff(Duration::from_millis(1), Duration::from_millis(1)))
}

async fn kit() -> TestBus {
    let builder = EventBus::builder()
        .service("depot")
        .handler_with(retried().name("track"), track)
        .handler_with(retried().name("weigh"), weigh);
    TestBus::start(builder).await.unwrap()
}

#[tokio::test]
async fn an_attempt_retried_with_success_is_not_a_failure() {
    let kit = kit().await;
    kit.inject(Envelope::new(ParcelScanned { parcel: 7 })).await;
    kit.inject(Envelope::new(ParcelWeighed { parcel: 7 })).await;
    let settled = kit.settle().await;
    settled.assert_clean();
    assert_eq!(settled.attempts.len(), 2, "{settled}");
    assert!(
        settled.to_string().contains("2 failed attempt(s)"),
        "{settled}"
    );
    assert!(
        settled
            .attempts
            .iter()
            .all(|f| matches!(f, Failure::Handler(h) if h.will_retry && h.attempt == 1)),
        "{:?}",
        settled.attempts
    );
    kit.shutdown().await;
}

#[tokio::test]
async fn an_event_that_failed_every_attempt_is_one_failure() {
    let kit = kit().await;
    kit.inject(Envelope::new(ParcelScanned { parcel: 0 })).await;
    kit.inject(Envelope::new(ParcelScanned { parcel: 8 })).await;
    let settled = kit.settle().await;
    assert!(!settled.is_clean());
    assert_eq!(settled.failures.len(), 1, "{settled}");
    let Failure::Handler(failed) = &settled.failures[0] else {
        panic!("{settled}");
    };
    assert_eq!((failed.attempt, failed.will_retry), (3, false));
    assert!(
        settled
            .to_string()
            .contains("parcel 0 is not in the manifest")
    );
    assert_eq!(
        settled.attempts.len(),
        4,
        "three of parcel 0, one of parcel 8"
    );
    kit.shutdown().await;
}
