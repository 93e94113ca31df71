//! A pub/sub dashboard: every second, the active channels with their subscriber counts
//! (`PUBSUB CHANNELS`, `PUBSUB NUMSUB`) and the number of pattern subscriptions
//! (`PUBSUB NUMPAT`), plus the server's round-trip time.
//!
//! Runs until Ctrl-C (or SIGTERM) through `shutdown_signal()`. `--once` prints one snapshot
//! and exits; `MONITOR_ITERATIONS=N` (or `--iterations N`) stops after N snapshots.
//! `--pattern GLOB` shows only the channels matching GLOB (such as `events:*`).
//!
//! Durable streams: `--stream events:order_placed` (repeatable; that one by default) shows
//! each consumer group of the stream with its consumers, pending entries and lag
//! (`XINFO GROUPS`).
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example monitor                  # in one terminal
//! cargo run --example notifications            # in another, to see channels come and go
//! ```
//!
//! `REDIS_URL=redis://host:port` watches another server.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use eventbus::EventBus;
use eventbus_suite::connect;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The consumer groups of the durable streams, one line each.
async fn groups(bus: &EventBus, streams: &[String]) -> anyhow::Result<String> {
    let mut out = String::new();
    for stream in streams {
        let groups = bus.stream_groups(stream).await?;
        out.push_str(&format!("stream {stream}: {} group(s)\n", groups.len()));
        for g in groups {
            let lag = g.lag.map_or_else(|| "?".to_owned(), |l| l.to_string());
            out.push_str(&format!(
                "  {}  consumers={} pending={} lag={lag}\n",
                g.group, g.consumers, g.pending
            ));
        }
    }
    Ok(out)
}

/// Prints one snapshot of the server's pub/sub and durable state.
async fn snapshot(
    bus: &EventBus,
    pattern: Option<&str>,
    streams: &[String],
    tick: u64,
) -> anyhow::Result<()> {
    let rtt = bus.ping().await?;
    let mut channels = bus.channels(pattern).await?;
    channels.sort();
    let counts = bus.numsub(&channels).await?;
    let patterns = bus.numpat().await?;

    let mut out = String::new();
    if std::io::stdout().is_terminal() {
        out.push_str("\x1b[2J\x1b[H"); // clear the screen, cursor home
    }
    out.push_str(&format!(
        "eventbus monitor #{tick}  ping {:.2} ms\n",
        rtt.as_secs_f64() * 1000.0
    ));
    out.push_str(&format!("active channels: {}\n", counts.len()));
    let width = counts
        .iter()
        .map(|(c, _)| c.len())
        .max()
        .unwrap_or(0)
        .max(7);
    for (channel, subscribers) in &counts {
        out.push_str(&format!("  {channel:<width$}  subscribers={subscribers}\n"));
    }
    out.push_str(&format!("pattern subscriptions: {patterns}\n"));
    out.push_str(&groups(bus, streams).await?);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: Option<u64> = if args.iter().any(|a| a == "--once") {
        Some(1)
    } else {
        match arg(&args, "--iterations").or_else(|| std::env::var("MONITOR_ITERATIONS").ok()) {
            Some(n) => Some(
                n.parse()
                    .context("the number of iterations must be a number")?,
            ),
            None => None,
        }
    };
    let pattern = arg(&args, "--pattern");
    let mut streams: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--stream")
        .map(|w| w[1].clone())
        .collect();
    if streams.is_empty() {
        streams.push("events:order_placed".to_owned());
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());

    let bus = connect(EventBus::builder().service("monitor"), &url).await?;

    let dashboard = async {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = 0;
        loop {
            ticker.tick().await;
            tick += 1;
            let result = snapshot(&bus, pattern.as_deref(), &streams, tick).await;
            if iterations.is_some_and(|n| tick >= n) {
                // The last snapshot decides the exit status.
                return result;
            }
            // A failed query is shown, not fatal: the next tick tries again.
            if let Err(e) = result {
                println!("eventbus monitor #{tick}: {e:#}");
            }
        }
    };
    let result = tokio::select! {
        result = dashboard => result,
        () = eventbus::shutdown_signal() => {
            println!("stopping");
            Ok(())
        }
    };
    bus.shutdown().await?;
    result
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
