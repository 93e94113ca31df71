//! The example of `docs/testing.md` ("Testing your service"), and the test kit's own behaviour: settle
//! waits for pub/sub and durable work, failures name the handler and the event, the record
//! holds what the service published, and assertions fail with what was published instead.

use std::time::Duration;

use eventbus::testing::TestBus;
use eventbus::{Envelope, Event, EventBus, Failure};
use serde::{Deserialize, Serialize};

// --- The service under test -------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", durable)]
struct OrderPlaced {
    order_id: u64,
    total: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "invoice_sent")]
struct InvoiceSent {
    order_id: u64,
    amount: f64,
}

/// Bills an order: refuses empty ones, publishes the invoice of the others.
async fn bill(order: Envelope<OrderPlaced>, bus: EventBus) -> anyhow::Result<()> {
    let total = order.data().total;
    anyhow::ensure!(
        total > 0.0,
        "order {} has nothing to bill",
        order.data().order_id
    );
    let invoice = InvoiceSent {
        order_id: order.data().order_id,
        amount: total,
    };
    bus.publish_with(invoice, eventbus::PublishOptions::caused_by(&order))
        .await?;
    Ok(())
}

fn billing() -> eventbus::EventBusBuilder {
    EventBus::builder().service("billing").handler(bill)
}

// --- The example ------------------------------------------------------------------------

#[tokio::test]
async fn billing_sends_one_invoice_per_order_and_refuses_empty_ones() {
    let kit = TestBus::start(billing()).await.unwrap();
    let order = Envelope::new(OrderPlaced {
        order_id: 7,
        total: 19.5,
    })
    .with_source("shop")
    .with_correlation_id("checkout-42");
    kit.inject(order).await;
    kit.inject(Envelope::new(OrderPlaced {
        order_id: 8,
        total: 0.0,
    }))
    .await;

    let settled = kit.settle().await;

    eventbus::assert_published!(kit, InvoiceSent { order_id: 7, amount } if *amount == 19.5);
    let invoices = kit.published::<InvoiceSent>();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].correlation_id(), Some("checkout-42"));
    assert_eq!(settled.failures.len(), 1, "{settled}");
    let Failure::Handler(failed) = &settled.failures[0] else {
        panic!("{settled}");
    };
    assert_eq!(&*failed.event_type, "order_placed");
    assert!(failed.handler.contains("bill"), "{}", failed.handler);
    assert!(
        failed
            .cause
            .to_string()
            .contains("order 8 has nothing to bill")
    );
    kit.shutdown().await;
}

// --- The kit ----------------------------------------------------------------------------

#[tokio::test]
async fn settle_returns_only_new_failures_and_published_raw_keeps_the_bytes() {
    let kit = TestBus::start(billing()).await.unwrap();
    kit.inject(Envelope::new(OrderPlaced {
        order_id: 1,
        total: 0.0,
    }))
    .await;
    assert_eq!(kit.settle().await.failures.len(), 1);
    kit.inject(Envelope::new(OrderPlaced {
        order_id: 2,
        total: 3.0,
    }))
    .await;
    let again = kit.settle().await;
    again.assert_clean();
    assert_eq!(kit.failures().len(), 1, "every failure since the start");
    let raw = kit.published_raw();
    assert_eq!(
        raw.len(),
        1,
        "injected events are not the service's: {raw:?}"
    );
    assert_eq!(raw[0].channel, "events:invoice_sent");
    assert!(!raw[0].durable);
    let text = std::str::from_utf8(&raw[0].payload).unwrap();
    assert!(text.contains(r#""source":"billing""#), "{text}");
    kit.shutdown().await;
}

#[tokio::test]
async fn durable_publishes_are_recorded_as_appends() {
    let kit = TestBus::start(EventBus::builder().service("shop"))
        .await
        .unwrap();
    kit.bus()
        .publish(OrderPlaced {
            order_id: 3,
            total: 1.0,
        })
        .await
        .unwrap();
    let raw = kit.published_raw();
    assert_eq!(
        (raw[0].channel.as_str(), raw[0].durable),
        ("events:order_placed", true)
    );
    eventbus::assert_published!(kit, OrderPlaced { order_id: 3, .. });
    kit.shutdown().await;
}

#[tokio::test]
#[should_panic(expected = "no published `invoice_sent` matches `InvoiceSent { order_id: 99, .. }`")]
async fn a_missing_event_fails_the_assertion_with_what_was_published() {
    let kit = TestBus::start(billing()).await.unwrap();
    kit.inject(Envelope::new(OrderPlaced {
        order_id: 5,
        total: 2.0,
    }))
    .await;
    kit.settle().await;
    eventbus::assert_published!(kit, InvoiceSent { order_id: 99, .. });
}

#[tokio::test]
#[should_panic(expected = "the bus was still busy after 200ms: handler `stuck`")]
async fn settle_says_what_is_still_busy() {
    let stuck = |_: InvoiceSent| std::future::pending::<()>();
    let builder = EventBus::builder().handler_with(
        eventbus::HandlerOptions::new().name("stuck").no_timeout(),
        stuck,
    );
    let kit = TestBus::start(builder).await.unwrap();
    kit.bus()
        .publish(InvoiceSent {
            order_id: 1,
            amount: 1.0,
        })
        .await
        .unwrap();
    kit.settle_within(Duration::from_millis(200)).await;
}
