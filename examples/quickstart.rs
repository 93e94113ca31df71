//! Quickstart: two event types, three handlers (one fails on purpose), a few events, a clean
//! shutdown.
//!
//! ```text
//! cargo run --example quickstart                                   # in-process transport
//! EVENTBUS_URL=redis://127.0.0.1:6379 cargo run --example quickstart   # through Redis
//! ```

use std::time::Duration;

use eventbus::{Envelope, Event, EventBus, Failure, PublishOptions};
use serde::{Deserialize, Serialize};

/// A new account: type `user_created`, channel `events:user_created`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
    email: String,
}

/// An order, with an explicit type name and schema version.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", version = 2)]
struct OrderPlaced {
    order_id: String,
    user_id: u64,
    total: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("the mail server refused {0}")]
struct MailError(String);

/// Sends the welcome mail; refuses addresses at example.org to show a failing handler.
async fn send_welcome(user: UserCreated) -> Result<(), MailError> {
    if user.email.ends_with("@example.org") {
        return Err(MailError(user.email));
    }
    println!(
        "  [send_welcome] welcome mail to {} <{}>",
        user.name, user.email
    );
    Ok(())
}

/// Places a first order for every new user, as a follow-up of the event.
async fn first_order(user: Envelope<UserCreated>, bus: EventBus) -> anyhow::Result<()> {
    let order = OrderPlaced {
        order_id: format!("welcome-{}", user.data().user_id),
        user_id: user.data().user_id,
        total: 0.0,
    };
    println!(
        "  [first_order] user {} → publishing order {}",
        user.data().user_id,
        order.order_id
    );
    bus.publish_with(order, PublishOptions::caused_by(&user))
        .await?;
    Ok(())
}

/// Audits orders with their envelope attributes.
async fn audit(order: Envelope<OrderPlaced>) {
    println!(
        "  [audit] order {} of user {} total {:.2} (id {}, from {}, caused by {})",
        order.data().order_id,
        order.data().user_id,
        order.data().total,
        order.id(),
        order.source(),
        order.causation_id().unwrap_or("-"),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("EVENTBUS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "memory://quickstart".to_owned());
    println!(
        "eventbus quickstart on {}",
        eventbus::transport::redact_url(&url)
    );

    let bus = EventBus::builder()
        .service("accounts")
        .handler(send_welcome)
        .handler(first_order)
        .handler(audit)
        .on_error(|failure: &Failure| println!("  [on_error] {failure}"))
        .connect(&url)
        .await?;

    let users = [
        (1001, "Ada", "ada@example.com"),
        (1002, "Grace", "grace@example.org"),
        (1003, "Linus", "linus@example.com"),
    ];
    for (user_id, name, email) in users {
        let receipt = bus
            .publish(UserCreated {
                user_id,
                name: name.into(),
                email: email.into(),
            })
            .await?;
        println!(
            "published user_created {user_id} as {} on {} ({} receiver(s))",
            receipt.id, receipt.channel, receipt.receivers
        );
        // Let the handlers print in order, for a readable demo.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics = bus.metrics();
    let report = bus.shutdown().await?;
    println!(
        "shut down: {} event(s) drained, {} left",
        report.drained, report.unprocessed
    );
    for h in &metrics.handlers {
        println!(
            "  handler {:<40} handled {} failed {}",
            h.name, h.handled, h.failed
        );
    }
    Ok(())
}
