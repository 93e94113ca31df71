//! Reading Redis stream replies (`XREADGROUP`, `XAUTOCLAIM`, `XPENDING`) into entries, in
//! both RESP2 (arrays) and RESP3 (maps) shapes.

use std::collections::HashMap;

use bytes::Bytes;
use redis::Value;

use crate::transport::GroupStatus;

/// The field of a stream entry that holds the envelope (wire contract v1.1).
pub(crate) const ENVELOPE_FIELD: &str = "envelope";
/// The field of a retry entry with the number of delayed retries that brought it back.
pub(crate) const DELAYED_FIELD: &str = "delayed";
/// The field of a retry entry with the attempts made on it before.
pub(crate) const ATTEMPTS_FIELD: &str = "attempts";

/// One stream entry: its id and the envelope it carries (empty when the field is missing,
/// which the bus then reports as undecodable; `None` when the entry was deleted from the
/// stream while pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) payload: Option<Bytes>,
    /// For an entry of a retry stream: how many delayed retries brought it back, and the
    /// attempts made on it before (0 and 0 otherwise).
    pub(crate) delayed: u32,
    pub(crate) attempts: u32,
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn pairs(v: Value) -> Vec<(Value, Value)> {
    match v {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    }
}

/// One `[id, [field, value, ...]]` entry. A deleted entry (`[id, nil]`) has no payload.
pub(crate) fn entry(v: Value) -> Option<Entry> {
    let Value::Array(mut parts) = v else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = text(&parts[0])?;
    if fields == Value::Nil {
        return Some(Entry {
            id,
            payload: None,
            delayed: 0,
            attempts: 0,
        });
    }
    let (mut payload, mut delayed, mut attempts) = (Bytes::new(), 0, 0);
    for (k, v) in pairs(fields) {
        let number = || text(&v).and_then(|t| t.parse().ok()).unwrap_or(0);
        match text(&k).as_deref() {
            Some(ENVELOPE_FIELD) => {
                payload = match v {
                    Value::BulkString(b) => Bytes::from(b),
                    Value::SimpleString(s) => Bytes::from(s),
                    _ => Bytes::new(),
                }
            }
            Some(DELAYED_FIELD) => delayed = number(),
            Some(ATTEMPTS_FIELD) => attempts = number(),
            _ => {}
        }
    }
    Some(Entry {
        id,
        payload: Some(payload),
        delayed,
        attempts,
    })
}

/// A list of entries.
pub(crate) fn entries(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// `XREADGROUP`'s reply for one stream: `[[key, [entry, ...]]]`, a map in RESP3, or nil.
pub(crate) fn read_group(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop().map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// `XAUTOCLAIM`'s reply: `[next cursor, [entry, ...], [deleted id, ...]]`.
pub(crate) fn auto_claim(v: Value) -> (String, Vec<Entry>, Vec<String>) {
    let Value::Array(parts) = v else {
        return ("0-0".to_owned(), Vec::new(), Vec::new());
    };
    let mut it = parts.into_iter();
    let cursor = it
        .next()
        .and_then(|c| text(&c))
        .unwrap_or_else(|| "0-0".to_owned());
    let claimed = it.next().map(entries).unwrap_or_default();
    let deleted = match it.next() {
        Some(Value::Array(ids)) => ids.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    (cursor, claimed, deleted)
}

/// The extended `XPENDING` reply: `[[id, consumer, idle ms, deliveries], ...]` → (id,
/// deliveries).
pub(crate) fn pending_counts(v: Value) -> Vec<(String, u32)> {
    let Value::Array(rows) = v else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|row| {
            let Value::Array(cols) = row else { return None };
            let id = text(cols.first()?)?;
            let n = text(cols.get(3)?)?.parse().ok()?;
            Some((id, n))
        })
        .collect()
}

/// `XINFO GROUPS`' rows, one per group.
pub(crate) fn groups(v: Value, stream: &str) -> Vec<GroupStatus> {
    let Value::Array(rows) = v else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|row| {
            let fields: HashMap<String, Value> = pairs(row)
                .into_iter()
                .filter_map(|(k, v)| Some((text(&k)?, v)))
                .collect();
            let field = |name: &str| fields.get(name).and_then(text);
            let count = |name: &str| field(name).and_then(|t| t.parse::<u64>().ok());
            Some(GroupStatus::new(
                stream,
                field("name")?,
                count("consumers").unwrap_or(0),
                count("pending").unwrap_or(0),
                count("lag"),
                field("last-delivered-id").unwrap_or_default(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    #[test]
    fn read_group_replies_give_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events:x"),
            Value::Array(vec![
                raw_entry("1-0", &[("envelope", "{}")]),
                raw_entry("2-0", &[("type", "x"), ("envelope", "{\"a\":1}")]),
                raw_entry("3-0", &[("other", "v")]),
                Value::Array(vec![bulk("4-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_group(reply);
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            Entry {
                id: "1-0".into(),
                payload: Some(Bytes::from_static(b"{}")),
                delayed: 0,
                attempts: 0,
            }
        );
        assert_eq!(got[1].payload.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(
            got[2].payload.as_deref(),
            Some(&b""[..]),
            "a missing envelope field is an empty payload"
        );
        assert_eq!(got[3].payload, None, "a deleted entry has no payload");
        assert!(read_group(Value::Nil).is_empty());
        let resp3 = Value::Map(vec![(
            bulk("events:x"),
            Value::Array(vec![raw_entry("4-0", &[("envelope", "z")])]),
        )]);
        assert_eq!(read_group(resp3)[0].id, "4-0");
    }

    #[test]
    fn auto_claim_and_pending_replies_are_read() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![raw_entry("1-0", &[("envelope", "e")])]),
            Value::Array(vec![bulk("2-0")]),
        ]);
        let (cursor, claimed, deleted) = auto_claim(reply);
        assert_eq!(cursor, "5-0");
        assert_eq!(claimed.len(), 1);
        assert_eq!(deleted, vec!["2-0".to_owned()]);
        let pending = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            bulk("c1"),
            Value::Int(1200),
            Value::Int(3),
        ])]);
        assert_eq!(pending_counts(pending), vec![("1-0".to_owned(), 3)]);
    }

    #[test]
    fn group_status_reads_the_named_group() {
        let row = |name: &str, lag: Value| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                Value::Int(2),
                bulk("pending"),
                Value::Int(7),
                bulk("last-delivered-id"),
                bulk("9-0"),
                bulk("entries-read"),
                Value::Int(9),
                bulk("lag"),
                lag,
            ])
        };
        let reply = Value::Array(vec![row("a", Value::Int(1)), row("b", Value::Nil)]);
        let got = groups(reply, "events:x");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            GroupStatus::new("events:x", "a", 2, 7, Some(1), "9-0")
        );
        assert_eq!((got[1].group.as_str(), got[1].lag), ("b", None));
        assert!(groups(Value::Nil, "events:x").is_empty());
    }
}
