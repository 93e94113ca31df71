//! A command the server refuses fails with an error whose message says what the server said
//! (its error code and text), not only its cause.

use eventbus::{Event, EventBus};
use eventbus_suite::redis_server::RedisServer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "invoice_due", durable)]
struct InvoiceDue {
    invoice: u64,
}

/// A publish the server refuses says what the server said in its message, not only in its
/// cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_says_what_the_server_said() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let bus = EventBus::builder()
        .service("billing")
        .connect(&server.url())
        .await
        .unwrap();
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let e = bus.publish(InvoiceDue { invoice: 1 }).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("OOM command not allowed"), "{text}");
    assert!(text.contains(&server.port().to_string()), "{text}");
    assert_eq!(e.kind(), eventbus::PublishErrorKind::Server, "{text}");
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    bus.shutdown().await.unwrap();
}
