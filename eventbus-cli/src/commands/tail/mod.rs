//! `eventbus tail`: envelopes as they arrive, from pub/sub channels or durable streams.

mod filter;
mod from;
mod pubsub;
mod stream;
pub(crate) mod topics;

use std::io::Write;
use std::time::Duration;

use clap::Args;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;

use crate::exit::{CliError, Code};
use crate::incoming::Incoming;
use crate::render::{Format, Printer};
use crate::style::Palette;
use filter::Filter;
use from::Start;

const EXAMPLES: &str = "\
Examples:
  eventbus tail                                   # events:* (PSUBSCRIBE)
  eventbus tail user_created order_placed         # events:user_created, events:order_placed
  eventbus tail 'events:user.*' --pretty          # a glob: PSUBSCRIBE
  eventbus tail --type user_created --source accounts
  eventbus tail --stream order_placed --from 0    # a durable stream, from its first entry
  eventbus tail --stream --from 2026-11-21T07:00:00Z
  eventbus tail user_created --count 1 --timeout 10   # exit 5 when nothing came in 10 s

Output (--json, the default): one object per line,
  {\"channel\":\"events:user_created\",\"envelope\":{...CloudEvents...}}
with \"entry_id\" for stream entries; a message that is not an envelope gives
  {\"channel\":...,\"error\":\"why\",\"raw\":\"the payload as text\"}";

/// Arguments of `eventbus tail`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct TailArgs {
    /// Event types (`user_created` means the channel `events:user_created`), channels
    /// (`events:...`) or globs (`events:user.*`, subscribed with PSUBSCRIBE); none means
    /// `events:*`.
    #[arg(value_name = "TOPIC|PATTERN")]
    topics: Vec<String>,

    /// One JSON object per line (the default).
    #[arg(long, conflicts_with = "pretty")]
    json: bool,

    /// A readable block per envelope, coloured on a terminal (unless NO_COLOR is set).
    #[arg(long)]
    pretty: bool,

    /// Show only envelopes of this type (decode failures are always shown).
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,

    /// Show only envelopes from this source.
    #[arg(long, value_name = "SOURCE")]
    source: Option<String>,

    /// Follow the durable streams (XREAD on `events:<type>`, field `envelope`) instead of
    /// pub/sub, without joining a consumer group.
    #[arg(long)]
    stream: bool,

    /// Where to start reading streams: `$` (new entries, the default), `0` (the first
    /// entry), an entry id, or an RFC 3339 time such as 2026-11-21T07:00:00Z.
    #[arg(long, requires = "stream", value_name = "$|0|ID|TIME")]
    from: Option<String>,

    /// Exit after N messages (decode failures included).
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// Exit after SECS seconds; with exit code 5 when nothing was received.
    #[arg(long, value_name = "SECS", value_parser = crate::commands::seconds)]
    timeout: Option<Duration>,
}

impl TailArgs {
    fn printer(&self) -> Printer {
        let format = if self.pretty {
            Format::Pretty
        } else {
            Format::Json
        };
        Printer::new(format, Palette::new(crate::terminal::colour()))
    }
}

/// Runs `eventbus tail`.
pub(crate) async fn run(url: &str, args: TailArgs) -> Result<(), CliError> {
    let start = Start::parse(args.from.as_deref())?;
    let (tx, mut rx) = unbounded_channel();
    let session = if args.stream {
        stream::follow(url, &args.topics, start, tx).await?
    } else {
        pubsub::subscribe(url, &args.topics, tx).await?
    };
    let filter = Filter::new(args.event_type.clone(), args.source.clone());
    let result = tokio::select! {
        result = show(&mut rx, &args, &filter) => result,
        () = eventbus::shutdown_signal() => Ok(()),
    };
    session.close().await;
    result
}

/// Prints what arrives until `--count`, `--timeout` or the end of the source.
async fn show(
    rx: &mut UnboundedReceiver<Result<Incoming, CliError>>,
    args: &TailArgs,
    filter: &Filter,
) -> Result<(), CliError> {
    let printer = args.printer();
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut shown = 0u64;
    while args.count.is_none_or(|n| shown < n) {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(next) => next,
                Err(_) => return timed_out(shown, args.timeout),
            },
            None => rx.recv().await,
        };
        let Some(incoming) = next.transpose()? else {
            return Ok(());
        };
        if let Some(text) = filter.render(&printer, &incoming) {
            if !write_out(&text)? {
                return Ok(());
            }
            shown += 1;
        }
    }
    Ok(())
}

fn timed_out(shown: u64, timeout: Option<Duration>) -> Result<(), CliError> {
    if shown > 0 {
        return Ok(());
    }
    let secs = timeout.unwrap_or_default().as_secs_f64();
    Err(CliError::new(
        Code::Timeout,
        format!("nothing received within {secs} s"),
    ))
}

/// Writes one item; `false` when stdout is closed (`| head`), which ends the tail quietly.
fn write_out(text: &str) -> Result<bool, CliError> {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}
