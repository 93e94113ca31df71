//! An event-driven back office: handlers for `user_created`, `order_placed` and
//! `system_alert`, a follow-up event published from a handler, and a failing handler that
//! affects nothing else.
//!
//! The `web` service publishes two sign-ups and two orders. The `backoffice` service sends
//! welcome mails, tries to sync each user to a CRM that is down (that handler fails every time:
//! its errors go to the `on_error` hook while the welcome mails still go out), audits orders,
//! and raises a `system_alert` for a large one, caused by the order (same correlation id), which
//! its on-call handler then pages. The example ends with the handlers' counters.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example event_driven             # REDIS_URL=redis://host:port to use another server
//! cargo run --example event_driven -- --asyncapi docs/   # also writes each service's AsyncAPI 3.0 document
//! ```
//!
//! `--asyncapi DIR` writes `DIR/backoffice.json` and `DIR/web.json` first, from the services'
//! builders (no server needed): the channels each service publishes to and receives on, with
//! the data's JSON Schema when built with eventbus's `schema` feature.

use std::process::ExitCode;
use std::time::Duration;

use eventbus::{Envelope, Event, EventBus, EventBusBuilder, HandlerOptions, PublishOptions};
use eventbus_suite::connect;
use serde::{Deserialize, Serialize};

/// A user signed up.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
    email: String,
}

/// An order was placed (schema version 2).
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", version = 2)]
struct OrderPlaced {
    order_id: String,
    user_id: u64,
    total: f64,
}

/// Something needs a human.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct SystemAlert {
    severity: String,
    message: String,
}

/// The CRM is unreachable.
#[derive(Debug, thiserror::Error)]
#[error("crm.example.com refused the connection for user {0}")]
struct CrmError(u64);

async fn send_welcome(user: UserCreated) -> anyhow::Result<()> {
    println!("welcome mail sent to {} <{}>", user.name, user.email);
    Ok(())
}

/// Fails every time: its failures are reported, other handlers run as usual.
async fn sync_to_crm(user: UserCreated) -> Result<(), CrmError> {
    Err(CrmError(user.user_id))
}

async fn audit_order(order: Envelope<OrderPlaced>, bus: EventBus) -> anyhow::Result<()> {
    let o = order.data();
    println!(
        "order {} by user {} for {:.2} (event {}, schema v{})",
        o.order_id,
        o.user_id,
        o.total,
        order.id(),
        order.dataversion().unwrap_or("?")
    );
    if o.total > 1000.0 {
        let alert = SystemAlert {
            severity: "high".into(),
            message: format!("order {} is over 1000", o.order_id),
        };
        bus.publish_with(alert, PublishOptions::caused_by(&order))
            .await?;
    }
    Ok(())
}

async fn page_oncall(alert: Envelope<SystemAlert>) {
    println!(
        "paging on-call [{}]: {} (caused by event {})",
        alert.data().severity,
        alert.data().message,
        alert.causation_id().unwrap_or("-")
    );
}

/// With `--asyncapi DIR`, writes each service's AsyncAPI document there. The documents come
/// from the builders: writing them needs no server.
fn write_asyncapi(services: &[(&str, &EventBusBuilder)], url: &str) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args
        .windows(2)
        .find(|w| w[0] == "--asyncapi")
        .map(|w| &w[1])
    else {
        return Ok(());
    };
    for (service, builder) in services {
        let path = std::path::Path::new(dir).join(format!("{service}.json"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&builder.asyncapi_for(url))?,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let named = |name: &str| HandlerOptions::new().name(name);
    let backoffice = EventBus::builder()
        .service("backoffice")
        .handler_with(named("send_welcome"), send_welcome)
        .handler_with(named("sync_to_crm"), sync_to_crm)
        .handler_with(named("audit_order"), audit_order)
        .handler_with(named("page_oncall"), page_oncall)
        .publishes::<SystemAlert>()
        .on_error(|failure| println!("on_error: {failure}"));
    let web = EventBus::builder()
        .service("web")
        .publishes::<UserCreated>()
        .publishes::<OrderPlaced>();
    write_asyncapi(&[("backoffice", &backoffice), ("web", &web)], &url)?;
    let backoffice = connect(backoffice, &url).await?;
    let web = connect(web, &url).await?;

    for (user_id, name) in [(1001, "Ada"), (1002, "Grace")] {
        web.publish(UserCreated {
            user_id,
            name: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
        })
        .await?;
    }
    for (order_id, user_id, total) in [("o-1", 1001, 42.5), ("o-2", 1002, 1999.0)] {
        web.publish(OrderPlaced {
            order_id: order_id.into(),
            user_id,
            total,
        })
        .await?;
    }

    // 2 welcome mails + 2 failed CRM syncs + 2 audits + 1 page.
    let finished = |bus: &EventBus| -> u64 {
        bus.metrics()
            .handlers
            .iter()
            .map(|h| h.handled + h.failed)
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while finished(&backoffice) < 7 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the handlers did not finish within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    println!("handler        handled  failed");
    let metrics = backoffice.metrics();
    for h in &metrics.handlers {
        println!("{:<14} {:>7} {:>7}", h.name, h.handled, h.failed);
    }
    let welcome = metrics.handler("send_welcome").map_or(0, |h| h.handled);
    let crm = metrics.handler("sync_to_crm").map_or(0, |h| h.failed);
    println!("isolation: {welcome} welcome mails sent although the CRM sync failed {crm} times");

    web.shutdown().await?;
    backoffice.shutdown().await?;
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
