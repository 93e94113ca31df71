//! `eventbus scheduled`: events waiting for their time (`publish_after`, `publish_at`).

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use eventbus::transport::{QueueStatus, Route, Scheduled};
use eventbus::{EventBus, ScheduleId};
use serde_json::json;

use crate::exit::{CliError, Code, chain};
use crate::session::{Session, connect};

const EXAMPLES: &str = "\
Examples:
  eventbus scheduled list                              # every queue, how many wait, next due
  eventbus scheduled list events:cart_expired --json   # the events waiting in one queue
  eventbus scheduled show events:cart_expired 0193b9c4-7a1e-7cc2-9f0e-0c5d2a8e4b11
  eventbus scheduled cancel events:cart_expired 0193b9c4-7a1e-7cc2-9f0e-0c5d2a8e4b11
A queue is a channel (a durable type's stream), or a keyed type's channel pattern.
`cancel` exits with 4 when the event had been sent already or is unknown.";

/// The `scheduled` subcommands.
#[derive(Debug, Subcommand)]
#[command(after_help = EXAMPLES)]
pub(crate) enum ScheduledCommand {
    /// List the queues of scheduled events, or the events waiting in one, first due first.
    #[command(after_help = EXAMPLES)]
    List(ListArgs),
    /// Print one waiting event in full.
    #[command(after_help = EXAMPLES)]
    Show(OneArgs),
    /// Cancel a waiting event: it is never sent.
    #[command(after_help = EXAMPLES)]
    Cancel(OneArgs),
}

/// Arguments of `scheduled list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The queue; without it, every queue.
    #[arg(value_name = "QUEUE")]
    queue: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Arguments naming one scheduled event.
#[derive(Debug, Args)]
pub(crate) struct OneArgs {
    /// The queue, as `scheduled list` shows it.
    #[arg(value_name = "QUEUE")]
    queue: String,
    /// The event id.
    #[arg(value_name = "ID")]
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `scheduled` subcommand.
pub(crate) async fn run(url: &str, command: ScheduledCommand) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let result = match command {
        ScheduledCommand::List(args) => list(&session, args).await,
        ScheduledCommand::Show(args) => show(&session, args).await,
        ScheduledCommand::Cancel(args) => cancel(&session, args).await,
    };
    session.close().await;
    result
}

fn failed(what: &str, e: &dyn std::error::Error) -> CliError {
    CliError::failed(format!("{what} failed: {}", chain(e)))
}

async fn list(session: &Session, args: ListArgs) -> Result<(), CliError> {
    let Some(queue) = args.queue else {
        let queues = session.bus.scheduled_queues().await;
        let queues = queues.map_err(|e| failed("listing schedule queues", &e))?;
        for q in queues.iter().filter(|_| args.json) {
            println!("{}", queue_json(q));
        }
        if !args.json {
            print!("{}", queue_table(&queues));
        }
        return Ok(());
    };
    let waiting = session.bus.scheduled(&queue, args.limit).await;
    let waiting = waiting.map_err(|e| failed("listing scheduled events", &e))?;
    for s in waiting.iter().filter(|_| args.json) {
        println!("{}", event_json(s));
    }
    if !args.json {
        print!("{}", event_table(&queue, &waiting));
    }
    Ok(())
}

async fn show(session: &Session, args: OneArgs) -> Result<(), CliError> {
    let waiting = session.bus.scheduled(&args.queue, usize::MAX).await;
    let waiting = waiting.map_err(|e| failed("reading scheduled events", &e))?;
    let Some(event) = waiting.into_iter().find(|s| s.id == args.id) else {
        return Err(not_found(&args));
    };
    if args.json {
        println!("{}", event_json(&event));
    } else {
        println!("queue    {}", event.queue);
        println!("id       {}", event.id);
        println!("channel  {} ({})", event.channel, route(event.route));
        println!("due      {}", when(event.due));
        println!("payload  {}", String::from_utf8_lossy(&event.payload));
    }
    Ok(())
}

async fn cancel(session: &Session, args: OneArgs) -> Result<(), CliError> {
    let id = ScheduleId::new(&args.queue, &args.id);
    let cancelled = session.bus.cancel_scheduled(&id).await;
    if !cancelled.map_err(|e| failed("cancelling", &e))? {
        return Err(not_found(&args));
    }
    if args.json {
        println!(
            "{}",
            json!({"queue": args.queue, "id": args.id, "cancelled": true})
        );
    } else {
        println!("cancelled {id}");
    }
    Ok(())
}

fn not_found(args: &OneArgs) -> CliError {
    CliError::new(
        Code::NotFound,
        format!(
            "no event {} waits in {}: it was sent already, was cancelled, or never scheduled",
            args.id, args.queue
        ),
    )
}

fn route(route: Route) -> &'static str {
    match route {
        Route::Append => "appended to its stream",
        Route::PublishSharded => "published on its shard",
        _ => "published",
    }
}

/// A due time as RFC 3339 (UTC, milliseconds).
fn when(at: Option<SystemTime>) -> String {
    let Some(at) = at else {
        return "-".to_owned();
    };
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".to_owned())
}

fn queue_json(q: &QueueStatus) -> serde_json::Value {
    json!({"queue": q.queue, "waiting": q.waiting, "next_due": q.next_due.map(|_| when(q.next_due))})
}

fn event_json(s: &Scheduled) -> serde_json::Value {
    json!({
        "queue": s.queue,
        "id": s.id,
        "channel": s.channel,
        "route": route(s.route),
        "due": when(s.due),
        "payload": String::from_utf8_lossy(&s.payload),
    })
}

fn queue_table(queues: &[QueueStatus]) -> String {
    if queues.is_empty() {
        return "no scheduled events\n".to_owned();
    }
    let mut out = format!("{:<40} {:>8} next due\n", "queue", "waiting");
    for q in queues {
        let _ = writeln!(out, "{:<40} {:>8} {}", q.queue, q.waiting, when(q.next_due));
    }
    out
}

fn event_table(queue: &str, waiting: &[Scheduled]) -> String {
    if waiting.is_empty() {
        return format!("no events wait in {queue}\n");
    }
    let mut out = format!("{:<26} {:<38} channel\n", "due", "id");
    for s in waiting {
        let _ = writeln!(out, "{:<26} {:<38} {}", when(s.due), s.id, s.channel);
    }
    let _ = writeln!(out, "{} events wait in {queue}", waiting.len());
    out
}
