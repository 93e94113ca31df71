//! An acknowledgement that does not go through while the connection is in trouble is sent
//! again until it does: the finished entry stays with its live consumer and never runs a second
//! time. Against a real redis-server whose writes are paused (`CLIENT PAUSE … WRITE`) right
//! when the handler finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventbus::redis::RedisOptions;
use eventbus::{DurableOptions, Event, EventBus, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "invoice_sent", durable)]
struct InvoiceSent {
    n: u64,
}

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_held_up_is_sent_again_and_the_entry_runs_once() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let server = Arc::new(server);
    let runs = Arc::new(AtomicU32::new(0));
    let (r, srv) = (runs.clone(), server.clone());
    let bus = EventBus::builder()
        .service("billing")
        .redis_options(
            RedisOptions::new()
                .response_timeout(Duration::from_millis(300))
                .publish_deadline(Duration::from_millis(600)),
        )
        .handler_with(
            HandlerOptions::new().durable(DurableOptions::new().claim_idle(Duration::from_secs(1))),
            move |_: InvoiceSent| {
                let (r, srv) = (r.clone(), srv.clone());
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        // Writes (XACK among them) wait 3 s: longer than the response timeout,
                        // the publish deadline and claim_idle together.
                        srv.cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
                    }
                }
            },
        )
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    bus.publish(InvoiceSent { n: 1 }).await.unwrap();
    let pending = || server.cli(&["XPENDING", "events:invoice_sent", "billing:invoice_sent"]);
    assert!(
        wait_for(LIMIT, || runs.load(Ordering::SeqCst) >= 1
            && pending().starts_with('0'))
        .await,
        "the entry was acknowledged in the end: {}",
        pending()
    );
    // Watched past the pause, a claim pass and a re-read of this consumer's pending entries.
    let again = wait_for(Duration::from_secs(3), || runs.load(Ordering::SeqCst) > 1).await;
    assert!(
        !again,
        "the finished entry ran {} times",
        runs.load(Ordering::SeqCst)
    );
    bus.shutdown().await.unwrap();
}
