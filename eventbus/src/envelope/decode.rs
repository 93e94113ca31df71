//! Reading a message: one pass over the JSON object. Known attributes are matched on borrowed
//! keys and kept as small JSON values, `data` is kept as a `RawValue` (never parsed here beyond
//! finding its end), and every other member goes into the extensions. The values are then
//! checked and converted into the header, with the tolerance the wire contract promises.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    DecodeError, Envelope, JSON_CONTENT_TYPE, RawEnvelope, SPECVERSION, kind, new_id, time,
};

/// The attributes read into fields, `data` aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attr {
    SpecVersion,
    Id,
    Source,
    Type,
    Time,
    Timestamp,
    DataContentType,
    DataVersion,
    CorrelationId,
    CausationId,
    TraceParent,
}

const ATTRS: usize = 11;

impl Attr {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "specversion" => Attr::SpecVersion,
            "id" => Attr::Id,
            "source" => Attr::Source,
            "type" => Attr::Type,
            "time" => Attr::Time,
            "timestamp" => Attr::Timestamp,
            "datacontenttype" => Attr::DataContentType,
            "dataversion" => Attr::DataVersion,
            "correlationid" => Attr::CorrelationId,
            "causationid" => Attr::CausationId,
            "traceparent" => Attr::TraceParent,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Attr::SpecVersion => "specversion",
            Attr::Id => "id",
            Attr::Source => "source",
            Attr::Type => "type",
            Attr::Time => "time",
            Attr::Timestamp => "timestamp",
            Attr::DataContentType => "datacontenttype",
            Attr::DataVersion => "dataversion",
            Attr::CorrelationId => "correlationid",
            Attr::CausationId => "causationid",
            Attr::TraceParent => "traceparent",
        }
    }
}

/// A member name, matched without allocating unless it is an extension.
enum Key {
    Attr(Attr),
    Data,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(match name {
            "data" => Key::Data,
            _ => Attr::from_name(name).map_or_else(|| Key::Other(name.to_owned()), Key::Attr),
        })
    }

    fn visit_string<E: de::Error>(self, name: String) -> Result<Key, E> {
        Ok(match name.as_str() {
            "data" => Key::Data,
            _ => match Attr::from_name(&name) {
                Some(attr) => Key::Attr(attr),
                None => Key::Other(name),
            },
        })
    }
}

/// The members of a message object, before checking.
#[derive(Default)]
struct Members {
    attrs: [Option<Value>; ATTRS],
    data: Option<Box<RawValue>>,
    extensions: Map<String, Value>,
    /// The first member name seen twice.
    duplicate: Option<String>,
}

impl Members {
    fn take(&mut self, attr: Attr) -> Option<Value> {
        // `null` counts as absent.
        self.attrs[attr as usize].take().filter(|v| !v.is_null())
    }
}

/// What the top-level JSON value was.
enum Message {
    Object(Box<Members>),
    NotObject(&'static str),
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut m = Box::<Members>::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Data => {
                    if m.data.is_some() {
                        m.duplicate.get_or_insert_with(|| "data".to_owned());
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        m.data = Some(map.next_value()?);
                    }
                }
                Key::Attr(attr) => {
                    let value: Value = map.next_value()?;
                    let slot = &mut m.attrs[attr as usize];
                    if slot.is_some() {
                        m.duplicate.get_or_insert_with(|| attr.name().to_owned());
                    } else {
                        *slot = Some(value);
                    }
                }
                Key::Other(name) => {
                    let value: Value = map.next_value()?;
                    if m.extensions.contains_key(&name) {
                        m.duplicate.get_or_insert(name);
                    } else {
                        m.extensions.insert(name, value);
                    }
                }
            }
        }
        Ok(Message::Object(m))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Message::NotObject("an array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Message, E> {
        Ok(Message::NotObject("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Message, E> {
        Ok(Message::NotObject("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Message, E> {
        Ok(Message::NotObject("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Message, E> {
        Ok(Message::NotObject("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Message, E> {
        Ok(Message::NotObject("a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Message, E> {
        Ok(Message::NotObject("null"))
    }
}

/// Parses a message into its header and raw data.
pub(super) fn parse(bytes: &[u8]) -> Result<RawEnvelope, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let message = de
        .deserialize_any(MessageVisitor)
        .and_then(|message| de.end().map(|()| message))
        .map_err(|e| match std::str::from_utf8(bytes) {
            Err(utf8) => DecodeError::NotUtf8 {
                valid_up_to: utf8.valid_up_to(),
            },
            Ok(_) => DecodeError::NotJson(e.to_string()),
        })?;
    match message {
        Message::Object(members) => header(*members),
        Message::NotObject(found) => Err(DecodeError::NotAnObject { found }),
    }
}

/// Checks and converts the members into a header.
fn header(mut m: Members) -> Result<RawEnvelope, DecodeError> {
    if let Some(name) = m.duplicate {
        return Err(DecodeError::attribute(&name, "appears more than once"));
    }
    if let Some(version) = m.take(Attr::SpecVersion) {
        match version {
            Value::String(v) if v == SPECVERSION => {}
            Value::String(v) => return Err(DecodeError::UnsupportedSpecVersion(v)),
            other => return Err(expected("specversion", "a string", &other)),
        }
    }
    let event_type = match m.take(Attr::Type) {
        None => return Err(DecodeError::MissingType),
        Some(Value::String(t)) if t.is_empty() => {
            return Err(DecodeError::attribute("type", "must not be empty"));
        }
        Some(Value::String(t)) => t,
        Some(other) => return Err(expected("type", "a string", &other)),
    };
    let id = match string_or_integer(&mut m, Attr::Id)? {
        None => new_id(),
        Some(id) if id.is_empty() => {
            return Err(DecodeError::attribute("id", "must not be empty"));
        }
        Some(id) => id,
    };
    let source = string(&mut m, Attr::Source)?.unwrap_or_default();
    // `time` wins; the plain shape's `timestamp` stands in for it, and is an ordinary extension
    // when both are present.
    let time_value = match (m.take(Attr::Time), m.take(Attr::Timestamp)) {
        (Some(time), timestamp) => {
            if let Some(timestamp) = timestamp {
                m.extensions.insert("timestamp".to_owned(), timestamp);
            }
            Some((Attr::Time, time))
        }
        (None, Some(timestamp)) => Some((Attr::Timestamp, timestamp)),
        (None, None) => None,
    };
    let time = match time_value {
        Some((attr, value)) => {
            time::parse(&value).map_err(|reason| DecodeError::attribute(attr.name(), reason))?
        }
        None => time::now(),
    };
    // The default is held as `None`, as in a new envelope, so that envelopes decode equal.
    let datacontenttype = string(&mut m, Attr::DataContentType)?.filter(|t| t != JSON_CONTENT_TYPE);
    let dataversion = string_or_integer(&mut m, Attr::DataVersion)?;
    let correlationid = string_or_integer(&mut m, Attr::CorrelationId)?;
    let causationid = string_or_integer(&mut m, Attr::CausationId)?;
    let traceparent = string(&mut m, Attr::TraceParent)?;
    let data = match m.data {
        Some(data) => data,
        None if m.extensions.contains_key("data_base64") => {
            return Err(DecodeError::attribute(
                "data_base64",
                "binary data is not supported: this bus reads JSON `data`",
            ));
        }
        None => RawValue::NULL.to_owned(),
    };
    let header = Envelope {
        id,
        source,
        event_type,
        time,
        datacontenttype,
        dataversion,
        correlationid,
        causationid,
        traceparent,
        extensions: m.extensions,
        data: (),
    };
    Ok(RawEnvelope { header, data })
}

fn string(m: &mut Members, attr: Attr) -> Result<Option<String>, DecodeError> {
    match m.take(attr) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(expected(attr.name(), "a string", &other)),
    }
}

/// A string, or an integer read as its decimal string (`"id": 42` from plain publishers).
fn string_or_integer(m: &mut Members, attr: Attr) -> Result<Option<String>, DecodeError> {
    match m.take(attr) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(Value::Number(n)) => Err(DecodeError::attribute(
            attr.name(),
            format!("expected a string or an integer, found the number {n}"),
        )),
        Some(other) => Err(expected(attr.name(), "a string or an integer", &other)),
    }
}

fn expected(name: &str, what: &str, found: &Value) -> DecodeError {
    DecodeError::attribute(name, format!("expected {what}, found {}", kind(found)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_round_trip() {
        for i in 0..ATTRS {
            let attr = [
                Attr::SpecVersion,
                Attr::Id,
                Attr::Source,
                Attr::Type,
                Attr::Time,
                Attr::Timestamp,
                Attr::DataContentType,
                Attr::DataVersion,
                Attr::CorrelationId,
                Attr::CausationId,
                Attr::TraceParent,
            ][i];
            assert_eq!(attr as usize, i);
            assert_eq!(Attr::from_name(attr.name()), Some(attr));
        }
        assert_eq!(Attr::from_name("data"), None);
        assert_eq!(Attr::from_name("subject"), None);
    }

    #[test]
    fn escaped_keys_are_matched() {
        let raw = parse(br#"{"\u0074ype":"a","d\u0061ta":1}"#).unwrap();
        assert_eq!(raw.event_type(), "a");
        assert_eq!(raw.data().get(), "1");
    }

    #[test]
    fn null_attributes_count_as_absent() {
        let raw = parse(br#"{"type":"a","id":null,"source":null,"time":null,"traceparent":null}"#)
            .unwrap();
        assert_eq!(raw.header.source, "");
        assert!(raw.header.traceparent.is_none());
        assert!(uuid::Uuid::parse_str(raw.id()).is_ok());
        assert!(matches!(
            parse(br#"{"type":null}"#),
            Err(DecodeError::MissingType)
        ));
    }

    #[test]
    fn time_wins_over_timestamp() {
        let raw =
            parse(br#"{"type":"a","time":"2026-01-01T00:00:00Z","timestamp":"garbage"}"#).unwrap();
        assert_eq!(raw.header.time.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(raw.header.extensions["timestamp"], "garbage");
    }

    #[test]
    fn duplicates_are_refused() {
        for input in [
            &br#"{"type":"a","type":"b"}"#[..],
            br#"{"type":"a","data":1,"data":2}"#,
            br#"{"type":"a","x":1,"x":2}"#,
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.to_string().ends_with("appears more than once"), "{err}");
        }
    }

    #[test]
    fn binary_data_is_refused() {
        let err = parse(br#"{"type":"a","data_base64":"AAEC"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `data_base64` attribute: binary data is not supported: this bus reads JSON `data`"
        );
    }
}
