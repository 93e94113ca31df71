//! A subscriber that survives its server: password authentication from the URL, connection
//! errors handled rather than fatal, and every change of connection state printed.
//!
//! It publishes a `heartbeat` every second and prints each one it receives back, together with
//! any other event on an `events:` channel. Stop the server for a moment
//! (`redis-cli -a s3cret shutdown nosave`, then start it again) and watch it report the
//! disconnect, reconnect and resubscribe; heartbeats published in between are missed, as pub/sub
//! delivers at most once. A wrong password or an unreachable server at start-up is an error
//! with a hint and a non-zero exit.
//!
//! Runs until Ctrl-C (or SIGTERM); `--seconds N` stops after N seconds.
//!
//! ```text
//! redis-server --port 6379 --save '' --requirepass s3cret &
//! REDIS_URL=redis://:s3cret@127.0.0.1:6379 cargo run --example robust_subscriber
//! REDIS_URL=redis://:s3cret@127.0.0.1:6379 cargo run --example robust_subscriber -- --seconds 10
//! ```
//!
//! Without `REDIS_URL` it connects to `redis://127.0.0.1:6379` (no password).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use eventbus::transport::redact_url;
use eventbus::{ConnectErrorKind, ConnectionEvent, Envelope, Event, EventBus, Topic};
use serde::{Deserialize, Serialize};

/// A sign of life, published every second.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Heartbeat {
    seq: u64,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: Option<u64> = arg(&args, "--seconds")
        .map(|s| s.parse().context("--seconds takes a whole number"))
        .transpose()?;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    println!("connecting to {}", redact_url(&url));
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();

    let connected = EventBus::builder()
        .service("robust-subscriber")
        .on_connection(|event| match event {
            ConnectionEvent::Disconnected { role, cause } => {
                println!("connection: {role} lost ({cause}); reconnecting in the background");
            }
            other => println!("connection: {other}"),
        })
        .on_error(|failure| eprintln!("failure: {failure}"))
        .handler(move |beat: Envelope<Heartbeat>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                println!(
                    "received heartbeat #{} (sent {})",
                    beat.data().seq,
                    beat.time()
                );
            }
        })
        .handler_on(
            Topic::pattern("events:*"),
            |e: Envelope<serde_json::Value>| async move {
                if e.event_type() != Heartbeat::TYPE {
                    println!(
                        "received {} from {}: {}",
                        e.event_type(),
                        e.source(),
                        e.data()
                    );
                }
            },
        )
        .connect(&url)
        .await;
    let bus = match connected {
        Ok(bus) => bus,
        Err(e) => {
            let hint = match e.kind() {
                ConnectErrorKind::Auth => {
                    "give the password in the URL: REDIS_URL=redis://:PASSWORD@host:port \
                     (or redis://USER:PASSWORD@host:port for an ACL user)"
                }
                ConnectErrorKind::InvalidUrl => {
                    "REDIS_URL must look like redis://[:PASSWORD@]host:port"
                }
                _ => "is the server running? `redis-server --port 6379 --save '' &`",
            };
            anyhow::bail!(
                "could not connect to {} ({:?}): {e}\nhint: {hint}",
                redact_url(&url),
                e.kind()
            );
        }
    };
    let topics: Vec<String> = bus.topics().iter().map(ToString::to_string).collect();
    println!("subscribed to {}", topics.join(" and "));

    let work = async {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut seq = 0;
        loop {
            ticker.tick().await;
            seq += 1;
            // While the server is away publishing fails: say so and carry on.
            match bus.publish(Heartbeat { seq }).await {
                Ok(receipt) => println!(
                    "published heartbeat #{seq} to {} subscriber(s)",
                    receipt.receivers
                ),
                Err(e) => println!("publishing heartbeat #{seq} failed ({:?}): {e}", e.kind()),
            }
        }
    };
    let stop = async {
        match seconds {
            Some(n) => tokio::time::sleep(Duration::from_secs(n)).await,
            None => eventbus::shutdown_signal().await,
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }

    println!("stopping");
    // Shutting down lets the handlers finish what already arrived, so count afterwards.
    bus.shutdown().await?;
    let m = bus.metrics();
    println!(
        "stopped: {} heartbeat(s) received, {} reconnect(s), {} decode error(s)",
        received.load(Ordering::Relaxed),
        m.reconnects,
        m.decode_errors
    );
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
