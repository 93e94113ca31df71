//! Time: events published for later.
//!
//! A shop schedules a cart's expiry 30 minutes ahead and cancels it when the customer pays;
//! it schedules an invoice reminder for a given time. Here the delays are shortened to a
//! fraction of a second. The scheduled events wait in the transport (on Redis: a sorted set
//! per channel, moved by a script on the server's clock) and enter their stream or channel
//! when due, with the id they got when they were scheduled.
//!
//! The roles `schedule FROM COUNT SPREAD_MS` and `move` are service processes for the fault
//! tests (`tests/schedule.rs`).
//!
//! ```text
//! cargo run --example reminders                                   # in-process (memory://)
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example reminders  # on a redis-server
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventbus::{Envelope, Event, EventBus};
use eventbus_suite::{Seen, wait_for};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// A cart that nobody paid for expires (durable: appended to its stream when due).
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(durable)]
struct CartExpired {
    cart_id: u64,
}

/// A reminder that an invoice is due (pub/sub: published when due).
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct InvoiceDue {
    invoice: String,
}

/// How long a cart lives here (30 minutes in the shop).
const CART_LIFETIME: Duration = Duration::from_millis(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://reminders".to_owned());
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("schedule") => return schedule_role(&url, &args[1..]).await,
        Some("move") => return move_role(&url).await,
        _ => {}
    }
    let seen: Seen<String> = Seen::new();
    let bus = shop(&url, &seen).await?;
    bus.ready(Duration::from_secs(5)).await?;

    // Two carts are opened; each expires unless paid for.
    let abandoned = bus
        .publish_after(CartExpired { cart_id: 1 }, CART_LIFETIME)
        .await?;
    let paid = bus
        .publish_after(CartExpired { cart_id: 2 }, CART_LIFETIME)
        .await?;
    println!(
        "cart 1 expires at {:?} (event {})",
        abandoned.due, abandoned.id
    );
    // The customer of cart 2 pays: its expiry is cancelled.
    let cancelled = bus.cancel_scheduled(paid.schedule_id()).await?;
    println!("cart 2 paid: expiry cancelled = {cancelled}");
    // An invoice reminder at a given time (a chrono::DateTime<Utc> works as well).
    let at = SystemTime::now() + CART_LIFETIME * 2;
    bus.publish_at(
        InvoiceDue {
            invoice: "INV-7".into(),
        },
        at,
    )
    .await?;

    let waiting = bus.scheduled_queues().await?;
    for q in &waiting {
        println!("waiting in {}: {}", q.queue, q.waiting);
    }
    anyhow::ensure!(
        wait_for(Duration::from_secs(10), || seen.len() >= 2).await,
        "the scheduled events did not arrive: {:?}",
        seen.snapshot()
    );
    for line in seen.snapshot() {
        println!("{line}");
    }
    // A second look: a cancelled expiry never comes, however long one waits.
    anyhow::ensure!(!bus.cancel_scheduled(paid.schedule_id()).await?);
    let lateness = bus.metrics().scheduled.lateness;
    println!(
        "{} scheduled events sent when due, p99 lateness under {:?}",
        lateness.count, lateness.p99
    );
    bus.shutdown().await?;
    Ok(())
}

/// The shop's bus: its handlers note each expired cart and each due invoice in `seen`.
async fn shop(url: &str, seen: &Seen<String>) -> anyhow::Result<EventBus> {
    let (carts, invoices) = (seen.clone(), seen.clone());
    let bus = EventBus::builder()
        .service("shop")
        .handler(move |e: Envelope<CartExpired>| {
            let carts = carts.clone();
            async move {
                carts.push(format!(
                    "cart {} expired (event {})",
                    e.data().cart_id,
                    e.id()
                ))
            }
        })
        .handler(move |e: InvoiceDue| {
            let invoices = invoices.clone();
            async move { invoices.push(format!("invoice {} is due", e.invoice)) }
        })
        .connect(url)
        .await?;
    Ok(bus)
}

/// `reminders schedule FROM COUNT SPREAD_MS`: a service process that schedules carts
/// FROM..FROM+COUNT to expire over the next SPREAD_MS (16 at a time), prints `due ID MS` for
/// each (its due time in milliseconds since the epoch), then `scheduled`, then keeps running
/// (its bus moving due events) until it is killed. For the fault tests.
async fn schedule_role(url: &str, args: &[String]) -> anyhow::Result<()> {
    let number = |i: usize| -> anyhow::Result<u64> {
        let text = args
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("usage: schedule FROM COUNT SPREAD_MS"))?;
        Ok(text.parse()?)
    };
    let (from, count, spread) = (number(0)?, number(1)?, number(2)?);
    let bus = EventBus::builder().service("carts").connect(url).await?;
    let bus = &bus;
    let schedules = futures_util::stream::iter(from..from + count).map(|cart_id| async move {
        let ahead = Duration::from_millis(spread * (cart_id - from) / count.max(1));
        (
            cart_id,
            bus.publish_after(CartExpired { cart_id }, ahead).await,
        )
    });
    let mut schedules = schedules.buffer_unordered(16);
    while let Some((cart_id, receipt)) = schedules.next().await {
        let due = receipt?.due.duration_since(UNIX_EPOCH)?.as_millis();
        println!("due {cart_id} {due}");
    }
    println!("scheduled");
    std::future::pending::<()>().await;
    Ok(())
}

/// `reminders move`: a bus that only moves due events, printing `ready`, until it is killed.
async fn move_role(url: &str) -> anyhow::Result<()> {
    let bus = EventBus::builder().service("carts").connect(url).await?;
    println!("ready");
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!("fired {}", bus.metrics().scheduled.fired);
    }
}
