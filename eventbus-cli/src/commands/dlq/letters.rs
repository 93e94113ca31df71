//! Reading dead letters and showing them.

use bytes::Bytes;
use eventbus::DeadLetter;
use eventbus::redis::DEAD_LETTER_PREFIX;
use redis::streams::{StreamId, StreamRangeReply};
use serde_json::{Value, json};

use super::ActionArgs;
use crate::exit::{CliError, Code, chain};
use crate::session::Session;

/// The stream that keeps an event type's dead letters.
pub(super) fn key(event_type: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{event_type}")
}

/// Up to `limit` letters, oldest first, through the bus.
pub(super) async fn list(
    session: &Session,
    event_type: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, CliError> {
    session
        .bus
        .dead_letters(event_type, limit)
        .await
        .map_err(|e| CliError::failed(format!("reading dead letters failed: {}", chain(&e))))
}

/// One letter by entry id; exit code 4 when there is none.
pub(super) async fn fetch(
    session: &Session,
    event_type: &str,
    entry_id: &str,
) -> Result<DeadLetter, CliError> {
    let mut conn = session.raw().await?;
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(key(event_type))
        .arg(entry_id)
        .arg(entry_id)
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("XRANGE", &e))?;
    match reply.ids.into_iter().next() {
        Some(entry) => Ok(from_entry(event_type, entry)),
        None => Err(CliError::new(
            Code::NotFound,
            format!("no dead letter {entry_id} of type {event_type}"),
        )),
    }
}

/// The letters an action names: those of its ids, or all of them (up to its limit).
pub(super) async fn chosen(
    session: &Session,
    args: &ActionArgs,
) -> Result<Vec<DeadLetter>, CliError> {
    if args.entry_ids.is_empty() {
        return list(session, &args.event_type, args.limit).await;
    }
    let mut letters = Vec::with_capacity(args.entry_ids.len());
    for id in &args.entry_ids {
        letters.push(fetch(session, &args.event_type, id).await?);
    }
    Ok(letters)
}

/// A dead-letter entry's fields: `handler`, `error`, `attempts`, `channel`, `durable`,
/// `payload`.
fn from_entry(event_type: &str, entry: StreamId) -> DeadLetter {
    let field = |name: &str| match entry.map.get(name) {
        Some(redis::Value::BulkString(b)) => b.clone(),
        Some(redis::Value::SimpleString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    };
    let text = |name: &str| String::from_utf8_lossy(&field(name)).into_owned();
    DeadLetter {
        entry_id: entry.id.clone(),
        event_type: event_type.to_owned(),
        channel: text("channel"),
        handler: text("handler"),
        error: text("error"),
        attempts: text("attempts").parse().unwrap_or(0),
        payload: Bytes::from(field("payload")),
        durable: text("durable") == "1",
    }
}

/// A letter as JSON; `payload` is the original message as text.
pub(super) fn to_json(letter: &DeadLetter) -> Value {
    json!({
        "entry_id": letter.entry_id,
        "type": letter.event_type,
        "channel": letter.channel,
        "handler": letter.handler,
        "attempts": letter.attempts,
        "durable": letter.durable,
        "error": letter.error,
        "payload": String::from_utf8_lossy(&letter.payload),
    })
}

/// The payload for people: indented JSON when it is JSON, the text otherwise.
pub(super) fn payload_text(letter: &DeadLetter) -> String {
    match serde_json::from_slice::<Value>(&letter.payload) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&letter.payload).into_owned(),
    }
}
