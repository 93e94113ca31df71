//! Where scheduled messages wait on Redis, and how one is stored.
//!
//! A queue (a channel, or a keyed type's channel pattern) has two keys: a sorted set of the
//! waiting ids by due time (milliseconds since the epoch, by the server's clock) and a hash of
//! their records. Both carry the queue's hash tag (the part of the name Redis hashes), so on a
//! cluster they live in the slot of the channel or stream a message goes to, and one script
//! moves a message from the queue to its stream there. The set `eventbus:schedules` names
//! every queue that held messages: the movers read it to know where to look.

use crate::redis::streams::reply::{ATTEMPTS_FIELD, DELAYED_FIELD, ENVELOPE_FIELD};
use crate::redis::streams::retention::StreamRetention;
use crate::transport::Route;

/// The set of the queues that held scheduled messages.
pub(crate) const INDEX: &str = "eventbus:schedules";

/// The prefix of the keys of schedule queues.
pub(crate) const PREFIX: &str = "eventbus:schedule:";

/// The part of `name` that Redis Cluster hashes: what the first `{…}` holds when it holds
/// something, else the whole name.
pub(crate) fn hash_tag(name: &str) -> &str {
    if let Some(open) = name.find('{')
        && let Some(len) = name[open + 1..].find('}')
        && len > 0
    {
        return &name[open + 1..open + 1 + len];
    }
    name
}

/// The sorted set and the hash of a queue.
pub(crate) struct QueueKeys {
    pub(crate) due: String,
    pub(crate) items: String,
}

impl QueueKeys {
    /// `eventbus:schedule:{<tag>}` for a queue that is its own tag, else
    /// `eventbus:schedule:{<tag>}<queue>`; the hash adds `:items`.
    pub(crate) fn of(queue: &str) -> Self {
        let tag = hash_tag(queue);
        let rest = if tag == queue { "" } else { queue };
        let due = format!("{PREFIX}{{{tag}}}{rest}");
        let items = format!("{due}:items");
        QueueKeys { due, items }
    }
}

/// The stream a group's delayed retries come back on: `eventbus:retry:{<tag>}…:<group>`, in
/// the slot of `stream`, read by that group only.
pub(crate) fn retry_stream(stream: &str, group: &str) -> String {
    let tag = hash_tag(stream);
    let rest = if tag == stream { "" } else { stream };
    format!("eventbus:retry:{{{tag}}}{rest}:{group}")
}

/// A stored entry for a group's retry stream: appended with the envelope and the fields that
/// say how many delayed retries and attempts it had, and the last error.
pub(crate) fn retry_record(
    target: &str,
    retention: StreamRetention,
    later: &crate::transport::Deferred,
) -> Vec<u8> {
    let (delayed, attempts) = (later.delayed.to_string(), later.attempts.to_string());
    let fields: [(&str, &[u8]); 4] = [
        (ENVELOPE_FIELD, &later.payload),
        (DELAYED_FIELD, delayed.as_bytes()),
        (ATTEMPTS_FIELD, attempts.as_bytes()),
        ("error", later.error.as_bytes()),
    ];
    let mut out = Vec::with_capacity(later.payload.len() + later.error.len() + 96);
    head(&mut out, "a", target, retention);
    for (name, value) in fields {
        netstring(&mut out, name.as_bytes());
        netstring(&mut out, value);
    }
    out
}

/// The record's first four parts: route, target, trimming and its value.
fn head(out: &mut Vec<u8>, route: &str, target: &str, retention: StreamRetention) {
    let (trim, value) = match retention {
        StreamRetention::MaxLen(n) => ("L", n.min(i64::MAX as usize).to_string()),
        StreamRetention::MaxAge(age) => ("A", age.as_millis().min(i64::MAX as u128).to_string()),
        StreamRetention::Unbounded => ("-", String::new()),
    };
    for part in [
        route.as_bytes(),
        target.as_bytes(),
        trim.as_bytes(),
        value.as_bytes(),
    ] {
        netstring(out, part);
    }
}

/// A stored message: netstrings (`<len>:<bytes>`) of the route (`p` publish, `s` sharded
/// publish, `a` append), the target, the trimming (`L` max length, `A` max age in ms, `-`
/// none) and its value, then the payload, or for an append the entry's fields and values.
pub(crate) fn record(
    route: Route,
    sharded: bool,
    target: &str,
    retention: StreamRetention,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + target.len() + 48);
    let route = match route {
        Route::Append => "a",
        Route::PublishSharded if sharded => "s",
        _ => "p",
    };
    head(&mut out, route, target, retention);
    if route == "a" {
        netstring(&mut out, ENVELOPE_FIELD.as_bytes());
    }
    netstring(&mut out, payload);
    out
}

fn netstring(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(part.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(part);
}

/// The parts of a record, as [`record`] wrote them; `None` for one it did not write.
pub(crate) fn parts(mut record: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !record.is_empty() {
        let colon = record.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&record[..colon]).ok()?.parse().ok()?;
        let rest = &record[colon + 1..];
        out.push(rest.get(..len)?);
        record = &rest[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn queue_keys_share_the_slot_of_their_channel() {
        assert_eq!(hash_tag("events:order_placed"), "events:order_placed");
        assert_eq!(hash_tag("events:{eu}:orders"), "eu");
        assert_eq!(hash_tag("events:{}:orders"), "events:{}:orders");
        assert_eq!(hash_tag("a{b"), "a{b");
        let plain = QueueKeys::of("events:order_placed");
        assert_eq!(plain.due, "eventbus:schedule:{events:order_placed}");
        assert_eq!(plain.items, "eventbus:schedule:{events:order_placed}:items");
        assert_eq!(hash_tag(&plain.items), "events:order_placed");
        let tagged = QueueKeys::of("events:{eu}:orders");
        assert_eq!(tagged.due, "eventbus:schedule:{eu}events:{eu}:orders");
        assert_eq!(hash_tag(&tagged.due), "eu");
    }

    #[test]
    fn records_read_back() {
        let r = record(
            Route::Append,
            false,
            "events:x",
            StreamRetention::MaxAge(Duration::from_secs(60)),
            b"{\"a\":\n1}",
        );
        let p = parts(&r).unwrap();
        assert_eq!(
            p,
            [
                &b"a"[..],
                b"events:x",
                b"A",
                b"60000",
                b"envelope",
                b"{\"a\":\n1}"
            ]
        );
        let r = record(
            Route::PublishSharded,
            true,
            "c",
            StreamRetention::Unbounded,
            b"",
        );
        assert_eq!(parts(&r).unwrap(), [&b"s"[..], b"c", b"-", b"", b""]);
        let r = record(
            Route::PublishSharded,
            false,
            "c",
            StreamRetention::Unbounded,
            b"x",
        );
        assert_eq!(parts(&r).unwrap()[0], b"p");
        assert!(parts(b"5:ab").is_none());
    }
}
