//! `eventbus monitor`: channels, subscribers, patterns and durable streams with their groups.

mod outbox;
mod snapshot;
mod view;

use std::io::Write;
use std::time::Duration;

use clap::Args;
use eventbus::EventBus;

use crate::exit::CliError;
use crate::session::{Session, connect};
use crate::style::Palette;
use snapshot::Snapshot;

const EXAMPLES: &str = "\
Examples:
  eventbus monitor                      # refreshes every 2 s until Ctrl-C
  eventbus monitor --interval 0.5 --pattern 'events:*'
  eventbus monitor --once               # one snapshot, for scripts
  eventbus monitor --once --json | jq '.streams[].groups[] | {group, lag, pending}'
  eventbus monitor --postgres postgres://me@db/shop   # the outbox too: waiting, oldest, relay

JSON: {\"ping_ms\",\"channels\":[{\"channel\",\"subscribers\"}],\"patterns\",
       \"streams\":[{\"stream\",\"length\",\"groups\":[{\"group\",\"consumers\",\"pending\",
       \"lag\",\"last_delivered_id\"}]}],
       \"scheduled\":[{\"queue\",\"waiting\",\"next_due_in_ms\"}],
       \"outbox\":{\"depth\",\"oldest_age_ms\",\"poisoned\",\"relay_holder\",\"relayed_per_s\"}}
       (lag is null when the server cannot tell; outbox only with --postgres)";

/// Arguments of `eventbus monitor`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct MonitorArgs {
    /// Print one snapshot and exit.
    #[arg(long)]
    once: bool,

    /// Seconds between snapshots.
    #[arg(long, default_value = "2", value_name = "SECS", value_parser = crate::commands::seconds)]
    interval: Duration,

    /// Show only the channels matching this glob.
    #[arg(long, value_name = "GLOB")]
    pattern: Option<String>,

    /// The streams to show: keys of type stream matching this glob.
    #[arg(long, default_value = "events:*", value_name = "GLOB")]
    streams: String,

    /// Print JSON (one object per snapshot, one per line).
    #[arg(long)]
    json: bool,

    /// Also show the transactional outbox in this PostgreSQL database.
    #[arg(
        long,
        env = "EVENTBUS_POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    postgres: Option<String>,

    /// The prefix of the outbox's tables.
    #[arg(
        long,
        default_value = "eventbus_",
        value_name = "PREFIX",
        requires = "postgres"
    )]
    table_prefix: String,

    /// The PostgreSQL schema of the outbox's tables (the connection's search path when not given).
    #[arg(long, value_name = "SCHEMA", requires = "postgres")]
    schema: Option<String>,
}

/// Runs `eventbus monitor`.
pub(crate) async fn run(url: &str, args: MonitorArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let result = tokio::select! {
        result = watch(&session, &args) => result,
        () = eventbus::shutdown_signal() => Ok(()),
    };
    session.close().await;
    result
}

async fn watch(session: &Session, args: &MonitorArgs) -> Result<(), CliError> {
    let mut conn = session.raw().await?;
    let in_place = crate::terminal::stdout_is_terminal() && !args.json;
    let palette = Palette::new(crate::terminal::colour());
    let mut outbox = match &args.postgres {
        Some(url) => Some(
            outbox::OutboxWatch::connect(url, &args.table_prefix, args.schema.as_deref()).await?,
        ),
        None => None,
    };
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut snapshot =
            Snapshot::take(session, &mut conn, args.pattern.as_deref(), &args.streams).await?;
        if let Some(watch) = outbox.as_mut() {
            snapshot.outbox = Some(watch.look().await?);
        }
        let text = if args.json {
            snapshot.to_json().to_string()
        } else {
            view::text(&snapshot, palette)
        };
        let mut out = std::io::stdout().lock();
        if in_place && !args.once {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(out, "{text}")?;
        out.flush()?;
        if args.once {
            return Ok(());
        }
    }
}
