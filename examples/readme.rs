//! The README's example, and the crate docs' (a test checks that all three agree).
//!
//! ```text
//! cargo run --example readme                                       # in-process transport
//! EVENTBUS_URL=redis://127.0.0.1:6379 cargo run --example readme   # through Redis
//! ```

use eventbus::{Envelope, Event, EventBus};
use serde::{Deserialize, Serialize};

// Type "user_created", channel "events:user_created".
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", version = 2)]
struct OrderPlaced {
    order_id: String,
    user_id: u64,
    total: f64,
}

async fn send_welcome(user: UserCreated) -> anyhow::Result<()> {
    println!("welcome mail to {} <{}>", user.name, user.email);
    Ok(())
}

async fn audit(order: Envelope<OrderPlaced>) {
    let (id, source) = (order.id(), order.source());
    println!("order {} from {source} (event {id})", order.data().order_id);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // "memory://" is the in-process transport; "redis://127.0.0.1:6379" a Redis server.
    let url = std::env::var("EVENTBUS_URL").unwrap_or_else(|_| "memory://".to_owned());

    let bus = EventBus::builder()
        .service("accounts") // the envelope's `source`
        .handler(send_welcome) // the event type comes from the argument
        .handler(audit)
        .on_error(|failure| eprintln!("handler failed: {failure}"))
        .connect(&url)
        .await?;

    let user = UserCreated {
        user_id: 1001,
        name: "Ada".into(),
        email: "ada@example.com".into(),
    };
    let receipt = bus.publish(user).await?;
    println!("published {} on {}", receipt.id, receipt.channel);

    let order = OrderPlaced {
        order_id: "A-17".into(),
        user_id: 1001,
        total: 19.5,
    };
    bus.publish(order).await?;

    bus.shutdown().await?; // stop intake, drain handlers in flight, close
    Ok(())
}
