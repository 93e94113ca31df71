//! One publisher, several subscribers: every service that handles an event gets its own copy.
//!
//! Three services (email, sms, push) each run a bus with a handler for `Notification`; a fourth
//! publishes three notifications. Each publish reports how many subscribers received it, and
//! the example ends once every subscriber has seen every notification.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example notifications            # REDIS_URL=redis://host:port to use another server
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventbus::{Event, EventBus, State};
use eventbus_suite::connect;
use serde::{Deserialize, Serialize};

/// A notification for a user, on the fixed channel `notifications`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(channel = "notifications")]
struct Notification {
    user_id: u64,
    title: String,
    body: String,
}

const SUBSCRIBERS: [&str; 3] = ["email", "sms", "push"];
const NOTIFICATIONS: usize = 3;

/// How many notifications the subscribers received, all together.
#[derive(Clone, Default)]
struct Delivered(Arc<AtomicUsize>);

/// Each subscriber service runs this handler; the bus tells it which service it is.
async fn deliver(note: Notification, bus: EventBus, State(delivered): State<Delivered>) {
    println!(
        "[{:>5}] to user {}: {} - {}",
        bus.service(),
        note.user_id,
        note.title,
        note.body
    );
    delivered.0.fetch_add(1, Ordering::SeqCst);
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let delivered = Delivered::default();

    let mut subscribers = Vec::new();
    for name in SUBSCRIBERS {
        let builder = EventBus::builder()
            .service(name)
            .state(delivered.clone())
            .handler(deliver);
        subscribers.push(connect(builder, &url).await?);
    }
    let publisher = connect(EventBus::builder().service("notifier"), &url).await?;

    let notes = [
        ("Welcome", "thanks for signing up"),
        ("Order shipped", "your order o-17 is on its way"),
        ("Password changed", "if this was not you, tell us"),
    ];
    for (i, (title, body)) in notes.into_iter().enumerate() {
        let receipt = publisher
            .publish(Notification {
                user_id: 1000 + i as u64,
                title: title.into(),
                body: body.into(),
            })
            .await?;
        println!(
            "published `{title}` on {} to {} subscriber(s)",
            receipt.channel, receipt.receivers
        );
    }

    let expected = SUBSCRIBERS.len() * NOTIFICATIONS;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while delivered.0.load(Ordering::SeqCst) < expected {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {} of {expected} deliveries arrived within 10 s",
            delivered.0.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "all {} subscribers received {NOTIFICATIONS} notifications",
        SUBSCRIBERS.len()
    );

    publisher.shutdown().await?;
    for bus in subscribers {
        bus.shutdown().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
