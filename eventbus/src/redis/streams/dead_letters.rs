//! The dead-letter store: one Redis stream per event type, `eventbus:dead:<type>`, with the
//! fields `handler`, `error`, `attempts`, `channel`, `durable` and `payload`.

use bytes::Bytes;
use redis::Value;

use std::sync::Arc;

use crate::redis::shared::Shared;
use crate::redis::streams::reply::text;
use crate::transport::{BoxFuture, DeadLetter, DeadLetterStore, TransportError};

/// The prefix of the dead-letter streams: `eventbus:dead:<event type>`.
pub const DEAD_LETTER_PREFIX: &str = "eventbus:dead:";

fn dead_letter_key(event_type: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{event_type}")
}

/// Reads one `XRANGE` entry: `[id, [field, value, ...]]`.
fn parse_dead_letter(event_type: &str, entry: Value) -> Option<DeadLetter> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let entry_id = text(&parts[0])?;
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    let mut letter = DeadLetter {
        entry_id,
        event_type: event_type.to_owned(),
        channel: String::new(),
        handler: String::new(),
        error: String::new(),
        attempts: 0,
        payload: Bytes::new(),
        durable: false,
    };
    for (k, v) in pairs {
        match text(&k).as_deref() {
            Some("channel") => letter.channel = text(&v).unwrap_or_default(),
            Some("handler") => letter.handler = text(&v).unwrap_or_default(),
            Some("error") => letter.error = text(&v).unwrap_or_default(),
            Some("attempts") => {
                letter.attempts = text(&v).and_then(|s| s.parse().ok()).unwrap_or(0)
            }
            Some("durable") => letter.durable = text(&v).as_deref() == Some("1"),
            Some("payload") => {
                if let Value::BulkString(b) = v {
                    letter.payload = Bytes::from(b);
                }
            }
            _ => {}
        }
    }
    Some(letter)
}

/// The dead-letter streams of a transport.
pub(crate) struct DeadLetters {
    pub(crate) shared: Arc<Shared>,
}

impl DeadLetterStore for DeadLetters {
    fn store<'a>(
        &'a self,
        letter: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut cmd = redis::cmd("XADD");
            cmd.arg(dead_letter_key(&letter.event_type));
            if let Some(max) = s.options.dead_letter_max_len {
                cmd.arg("MAXLEN").arg("~").arg(max);
            }
            cmd.arg("*")
                .arg("handler")
                .arg(&letter.handler)
                .arg("error")
                .arg(&letter.error)
                .arg("attempts")
                .arg(letter.attempts)
                .arg("channel")
                .arg(&letter.channel)
                .arg("durable")
                .arg(if letter.durable { "1" } else { "0" })
                .arg("payload")
                .arg(letter.payload.as_ref());
            s.command("storing a dead letter", &cmd, s.options.publish_deadline)
                .await
        })
    }

    fn list<'a>(
        &'a self,
        event_type: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let s = &self.shared;
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(dead_letter_key(event_type))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit);
            let entries: Vec<Value> = s
                .command("reading dead letters", &cmd, s.options.publish_deadline)
                .await?;
            Ok(entries
                .into_iter()
                .filter_map(|e| parse_dead_letter(event_type, e))
                .collect())
        })
    }

    fn remove<'a>(
        &'a self,
        event_type: &'a str,
        entry_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut cmd = redis::cmd("XDEL");
            cmd.arg(dead_letter_key(event_type)).arg(entry_id);
            s.command::<u64>("removing a dead letter", &cmd, s.options.publish_deadline)
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_entries_are_read() {
        let field = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            field("1-0"),
            Value::Array(vec![
                field("handler"),
                field("h"),
                field("error"),
                field("boom"),
                field("attempts"),
                field("3"),
                field("channel"),
                field("events:x"),
                field("payload"),
                Value::BulkString(vec![0, 159, 146, 150]),
            ]),
        ]);
        let d = parse_dead_letter("x", entry).unwrap();
        assert_eq!(d.entry_id, "1-0");
        assert_eq!(d.handler, "h");
        assert_eq!(d.error, "boom");
        assert_eq!(d.attempts, 3);
        assert_eq!(d.channel, "events:x");
        assert_eq!(&d.payload[..], &[0, 159, 146, 150]);
    }
}
