//! `eventbus publish`: one event in a CloudEvents envelope, on its channel or its stream.

use std::io::Read;

use bytes::Bytes;
use clap::Args;
use eventbus::{EventBus, PublishErrorKind};
use serde_json::json;

use crate::commands::tail::topics::channel_name;
use crate::envelope::{Draft, Encoded};
use crate::exit::{CliError, Code, chain};
use crate::session::{SERVICE, Session, connect};

const EXAMPLES: &str = "\
Examples:
  eventbus publish user_created '{\"user_id\":1001,\"name\":\"Ada\"}'
  eventbus publish order_placed @order.json                    # XADD when events:order_placed is a stream
  eventbus publish order_placed @order.json --durable          # XADD, creating the stream
  eventbus publish order_placed '{}' --pubsub                  # PUBLISH even if a stream exists
  echo '{\"user_id\":1}' | eventbus publish user_created - --json
  eventbus publish user_created '{}' --source accounts --correlation-id order-77
  eventbus publish ping '{}' --channel test:ping

Without --durable or --pubsub the key is looked at first (TYPE): when events:<TYPE> (or
--channel) is a stream, the type is durable and the envelope is appended to the stream, as
--durable does, instead of published to no one; otherwise it is published.
Prints the receipt: the envelope id, the channel and how many subscribers received it
(PUBLISH's answer), or the stream entry id when appended. Invalid JSON data exits with 1.";

/// Arguments of `eventbus publish`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct PublishArgs {
    /// The event type, such as `user_created` (channel `events:user_created`).
    #[arg(value_name = "TYPE")]
    event_type: String,

    /// The event's data: JSON, `@FILE` to read it from a file, or `-` for stdin.
    #[arg(value_name = "JSON|@FILE|-", allow_hyphen_values = true)]
    data: String,

    /// The envelope's `source`.
    #[arg(long, default_value = SERVICE)]
    source: String,

    /// The envelope's `correlationid`.
    #[arg(long, value_name = "ID")]
    correlation_id: Option<String>,

    /// The envelope's `dataversion`, the schema version of the data.
    #[arg(long, default_value_t = 1, value_name = "N")]
    data_version: u32,

    /// Publish on this channel (or stream) instead of `events:<TYPE>`.
    #[arg(long)]
    channel: Option<String>,

    /// Append to the durable stream (XADD, field `envelope`) instead of PUBLISH, creating
    /// the stream if needed. Without it, an existing stream is appended to all the same.
    #[arg(long, conflicts_with = "pubsub")]
    durable: bool,

    /// PUBLISH on the channel even when a stream of that name exists.
    #[arg(long)]
    pubsub: bool,

    /// Print the receipt as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `eventbus publish`.
pub(crate) async fn run(url: &str, args: PublishArgs) -> Result<(), CliError> {
    let draft = Draft {
        event_type: args.event_type.clone(),
        data: read_data(&args.data)?,
        source: args.source.clone(),
        correlation_id: args.correlation_id.clone(),
        data_version: args.data_version,
    };
    let encoded = draft.encode()?;
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| channel_name(&args.event_type));
    let session = connect(url, EventBus::builder()).await?;
    let sent = send(&session, &args, &channel, &encoded).await;
    session.close().await;
    println!("{}", receipt(&args, &channel, &encoded.id, &sent?));
    Ok(())
}

/// Where the event went: how many received it, or its entry id.
#[derive(Debug)]
enum Sent {
    Published(u64),
    /// Appended: the entry id, and whether because the stream existed (no `--durable`).
    Appended(String, bool),
}

/// Whether to append (`--durable`, or no flag and `channel` is a stream) or to publish.
async fn append(session: &Session, args: &PublishArgs, channel: &str) -> Result<bool, CliError> {
    if args.durable || args.pubsub {
        return Ok(args.durable);
    }
    let mut conn = session.raw().await?;
    let kind: String = redis::cmd("TYPE")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("TYPE", &e))?;
    Ok(kind == "stream")
}

async fn send(
    session: &Session,
    args: &PublishArgs,
    channel: &str,
    encoded: &Encoded,
) -> Result<Sent, CliError> {
    let bytes = Bytes::from(encoded.bytes.clone());
    if append(session, args, channel).await? {
        let entry = session
            .transport
            .append(channel, bytes)
            .await
            .map_err(|e| {
                CliError::failed(format!("appending to {channel} failed: {}", chain(&e)))
            })?;
        return Ok(Sent::Appended(entry, !args.durable));
    }
    let receipt = session.bus.publish_raw(channel, bytes).await.map_err(|e| {
        let code = match e.kind() {
            PublishErrorKind::Config => Code::Usage,
            _ => Code::Failed,
        };
        CliError::new(
            code,
            format!("publishing on {channel} failed: {}", chain(&e)),
        )
    })?;
    Ok(Sent::Published(receipt.receivers))
}

fn receipt(args: &PublishArgs, channel: &str, id: &str, sent: &Sent) -> String {
    let event_type = &args.event_type;
    match (sent, args.json) {
        (Sent::Published(n), true) => {
            json!({"id": id, "type": event_type, "channel": channel, "receivers": n}).to_string()
        }
        (Sent::Appended(entry, _), true) => {
            json!({"id": id, "type": event_type, "channel": channel, "entry_id": entry}).to_string()
        }
        (Sent::Published(n), false) => {
            format!("published {event_type} {id} on {channel}: {n} receivers")
        }
        (Sent::Appended(entry, false), false) => {
            format!("appended {event_type} {id} to stream {channel}: entry {entry}")
        }
        (Sent::Appended(entry, true), false) => format!(
            "appended {event_type} {id} to the stream {channel}: a durable type \
             (entry {entry}; --pubsub publishes instead)"
        ),
    }
}

/// The data argument's text: itself, a file's content (`@FILE`) or stdin (`-`).
fn read_data(arg: &str) -> Result<String, CliError> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage(format!("reading the data from stdin failed: {e}")))?;
        return Ok(text);
    }
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("reading the data from {path} failed: {e}"))),
        None => Ok(arg.to_owned()),
    }
}
