//! Two services in two processes: `ping` sends `Ping` events, `pong` answers each with a
//! `Pong` caused by it (same correlation id, the ping's id as causation id).
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example ping_pong -- pong --count 3 &     # answers 3 pings, then exits
//! cargo run --example ping_pong -- ping --count 3       # waits for a pong service, sends 3 pings
//! ```
//!
//! Without `--count`, `pong` runs until Ctrl-C. `ping` exits non-zero when no pong service
//! shows up within 10 s or a pong is more than 5 s late. `REDIS_URL=redis://host:port` uses
//! another server.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use eventbus::{Envelope, Event, EventBus, PublishOptions, State};
use eventbus_suite::connect;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A ping, from the process `pid`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ping {
    seq: u64,
    pid: u32,
}

/// The answer to ping `seq`, from the process `pid`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Pong {
    seq: u64,
    pid: u32,
}

/// How many pings the pong service answered.
#[derive(Clone, Default)]
struct Answered {
    count: Arc<AtomicU64>,
    changed: Arc<Notify>,
}

async fn answer(
    ping: Envelope<Ping>,
    bus: EventBus,
    State(answered): State<Answered>,
) -> anyhow::Result<()> {
    let pong = Pong {
        seq: ping.data().seq,
        pid: std::process::id(),
    };
    bus.publish_with(pong, PublishOptions::caused_by(&ping))
        .await?;
    println!(
        "pong: answered ping #{} from process {}",
        ping.data().seq,
        ping.data().pid
    );
    answered.count.fetch_add(1, Ordering::SeqCst);
    answered.changed.notify_waiters();
    Ok(())
}

async fn pong(url: &str, count: Option<u64>) -> anyhow::Result<()> {
    let answered = Answered::default();
    let bus = connect(
        EventBus::builder()
            .service("pong")
            .state(answered.clone())
            .handler(answer)
            .on_error(|failure| eprintln!("pong: {failure}")),
        url,
    )
    .await?;
    println!("pong: ready (process {})", std::process::id());
    let done = async {
        loop {
            let changed = answered.changed.notified();
            if count.is_some_and(|n| answered.count.load(Ordering::SeqCst) >= n) {
                return;
            }
            changed.await;
        }
    };
    tokio::select! {
        () = done => {}
        () = eventbus::shutdown_signal() => {}
    }
    bus.shutdown().await?;
    println!(
        "pong: answered {} ping(s)",
        answered.count.load(Ordering::SeqCst)
    );
    Ok(())
}

async fn ping(url: &str, count: u64) -> anyhow::Result<()> {
    let bus = connect(EventBus::builder().service("ping"), url).await?;
    let mut pongs = bus.stream::<Pong>().await?;

    // Pub/sub keeps nothing for absent subscribers: wait until a pong service listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = vec![Ping::CHANNEL.to_owned()];
    loop {
        let listeners = bus.numsub(&channel).await?.first().map_or(0, |(_, n)| *n);
        if listeners > 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no pong service subscribed to {} within 10 s: start one with `cargo run --example ping_pong -- pong`",
            Ping::CHANNEL
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for seq in 1..=count {
        let started = Instant::now();
        let receipt = bus
            .publish(Ping {
                seq,
                pid: std::process::id(),
            })
            .await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), pongs.next())
            .await
            .with_context(|| format!("no pong for ping #{seq} within 5 s"))?
            .context("the pong stream ended")?;
        if reply.data().seq != seq || reply.causation_id() != Some(receipt.id.as_str()) {
            bail!(
                "pong #{} (caused by {:?}) does not answer ping #{seq} ({})",
                reply.data().seq,
                reply.causation_id(),
                receipt.id
            );
        }
        println!(
            "ping: pong #{seq} from process {} in {:.1} ms (caused by {})",
            reply.data().pid,
            started.elapsed().as_secs_f64() * 1000.0,
            receipt.id
        );
    }
    println!("ping: {count} pong(s) received");
    bus.shutdown().await?;
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = match args.iter().position(|a| a == "--count") {
        Some(i) => Some(
            args.get(i + 1)
                .context("--count takes a number")?
                .parse::<u64>()
                .context("--count takes a number")?,
        ),
        None => None,
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match args.first().map(String::as_str) {
        Some("pong") => pong(&url, count).await,
        Some("ping") => ping(&url, count.unwrap_or(3)).await,
        _ => bail!("usage: ping_pong (ping | pong) [--count N]"),
    }
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
