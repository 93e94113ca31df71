//! Reading a message: one pass over the JSON object. Known attributes are matched on borrowed
//! keys and kept as small JSON values, `data` is kept as a `RawValue` (never parsed here beyond
//! finding its end), and every other member goes into the extensions. The values are then
//! checked and converted into the header, with the tolerance the wire contract promises.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::spec::{JSON_CONTENT_TYPE, SPECVERSION};
use super::{DecodeError, Envelope, RawEnvelope, time};

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

/// An attribute's value. Strings borrow from the message when they have no escapes, so that
/// `specversion`, `time` and `datacontenttype` are checked without allocating.
#[derive(Debug)]
enum Field<'de> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'de, str>),
    /// Arrays and objects: never valid for a known attribute, but kept for the message and for
    /// `timestamp`, which becomes an extension when `time` is present.
    Other(Box<Value>),
}

impl Field<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Bool(_) => "a boolean",
            Field::Number(_) => "a number",
            Field::Str(_) => "a string",
            Field::Other(value) => super::kind(value),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(b),
            Field::Number(n) => Value::Number(n),
            Field::Str(s) => Value::String(s.into_owned()),
            Field::Other(value) => *value,
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
        Ok(Field::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
        // serde_json never produces a non-finite float.
        Ok(Number::from_f64(v).map_or(Field::Null, Field::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Field::Other(Box::new(Value::Array(items))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        let mut members = Map::new();
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            members.insert(name, value);
        }
        Ok(Field::Other(Box::new(Value::Object(members))))
    }
}

/// The members of a message object, before checking.
#[derive(Default)]
struct Members<'de> {
    attrs: [Option<Field<'de>>; ATTRS],
    data: Option<Box<RawValue>>,
    extensions: Map<String, Value>,
    /// The first member name seen twice.
    duplicate: Option<String>,
}

impl<'de> Members<'de> {
    fn take(&mut self, attr: Attr) -> Option<Field<'de>> {
        // `null` counts as absent.
        self.attrs[attr as usize]
            .take()
            .filter(|v| !matches!(v, Field::Null))
    }
}

/// What the top-level JSON value was; an object's members are in the visitor's `Members`.
enum Message {
    Object,
    NotObject(&'static str),
}

/// Reads the top-level value, filling in `members` (held by the caller, so that the large
/// struct is never moved).
struct MessageVisitor<'a, 'de> {
    members: &'a mut Members<'de>,
}

impl<'de> Visitor<'de> for MessageVisitor<'_, 'de> {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let m = self.members;
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
                    let value: Field<'de> = map.next_value()?;
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
        Ok(Message::Object)
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
///
/// The whole message is checked to be UTF-8 at once, then read as text: serde_json reading
/// bytes checks each string and the raw `data` apart, which took 1 780 of the 8 480
/// instructions of a parse (callgrind, `bench --profile memory`). JSON is UTF-8 throughout, so
/// what is accepted, and which error a message gets, does not change.
pub(super) fn parse(bytes: &[u8]) -> Result<RawEnvelope, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|utf8| DecodeError::NotUtf8 {
        valid_up_to: utf8.valid_up_to(),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    read(&mut de)
        .and_then(|message| de.end().map(|()| message))
        .map_err(|e| DecodeError::NotJson(e.to_string()))?
}

/// Reads a message from a serde_json deserializer (`data` is kept as a `RawValue`, which only
/// serde_json's deserializers, of text and of `Value`s, can give). The outer error is the
/// deserializer's, the inner one the message's.
pub(super) fn read<'de, D: de::Deserializer<'de>>(
    de: D,
) -> Result<Result<RawEnvelope, DecodeError>, D::Error> {
    let mut members = Members::default();
    let message = de.deserialize_any(MessageVisitor {
        members: &mut members,
    })?;
    Ok(match message {
        Message::Object => header(members),
        Message::NotObject(found) => Err(DecodeError::NotAnObject { found }),
    })
}

/// Checks and converts the members into a header.
fn header(mut m: Members<'_>) -> Result<RawEnvelope, DecodeError> {
    if let Some(name) = m.duplicate {
        return Err(DecodeError::attribute(&name, "appears more than once"));
    }
    check_specversion(&mut m)?;
    let event_type = event_type(&mut m)?;
    let id = id(&mut m)?;
    let source = string(&mut m, Attr::Source)?.map_or_else(String::new, Cow::into_owned);
    let time = event_time(&mut m)?;
    // The default is held as `None`, as in a new envelope, so that envelopes decode equal.
    let datacontenttype = string(&mut m, Attr::DataContentType)?
        .filter(|t| t != JSON_CONTENT_TYPE)
        .map(Cow::into_owned);
    let dataversion = string_or_integer(&mut m, Attr::DataVersion)?;
    let correlationid = string_or_integer(&mut m, Attr::CorrelationId)?;
    let causationid = string_or_integer(&mut m, Attr::CausationId)?;
    let traceparent = string(&mut m, Attr::TraceParent)?.map(Cow::into_owned);
    let data = data(&mut m)?;
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

/// `specversion`, when given, must be the one this bus speaks.
#[inline]
fn check_specversion(m: &mut Members<'_>) -> Result<(), DecodeError> {
    match m.take(Attr::SpecVersion) {
        None => Ok(()),
        Some(Field::Str(v)) if v == SPECVERSION => Ok(()),
        Some(Field::Str(v)) => Err(DecodeError::UnsupportedSpecVersion(v.into_owned())),
        Some(other) => Err(expected(Attr::SpecVersion, "a string", &other)),
    }
}

/// `type`: required, a non-empty string.
#[inline]
fn event_type(m: &mut Members<'_>) -> Result<String, DecodeError> {
    match m.take(Attr::Type) {
        None => Err(DecodeError::MissingType),
        Some(Field::Str(t)) if t.is_empty() => {
            Err(DecodeError::attribute("type", "must not be empty"))
        }
        Some(Field::Str(t)) => Ok(t.into_owned()),
        Some(other) => Err(expected(Attr::Type, "a string", &other)),
    }
}

/// `id`: a new one when absent, never empty.
#[inline]
fn id(m: &mut Members<'_>) -> Result<String, DecodeError> {
    match string_or_integer(m, Attr::Id)? {
        None => Ok(time::new_id()),
        Some(id) if id.is_empty() => Err(DecodeError::attribute("id", "must not be empty")),
        Some(id) => Ok(id),
    }
}

/// `time` wins; the plain shape's `timestamp` stands in for it, and is an ordinary extension
/// when both are present. Now when neither is.
#[inline]
fn event_time(m: &mut Members<'_>) -> Result<chrono::DateTime<chrono::Utc>, DecodeError> {
    match (m.take(Attr::Time), m.take(Attr::Timestamp)) {
        (Some(time), timestamp) => {
            if let Some(timestamp) = timestamp {
                m.extensions
                    .insert("timestamp".to_owned(), timestamp.into_value());
            }
            read_time(Attr::Time, &time)
        }
        (None, Some(timestamp)) => read_time(Attr::Timestamp, &timestamp),
        (None, None) => Ok(time::now()),
    }
}

/// `data` as it was written, `null` when absent; `data_base64` is refused.
#[inline]
fn data(m: &mut Members<'_>) -> Result<Box<RawValue>, DecodeError> {
    match m.data.take() {
        Some(data) => Ok(data),
        None if m.extensions.contains_key("data_base64") => Err(DecodeError::attribute(
            "data_base64",
            "binary data is not supported: this bus reads JSON `data`",
        )),
        None => Ok(RawValue::NULL.to_owned()),
    }
}

fn read_time(attr: Attr, value: &Field<'_>) -> Result<chrono::DateTime<chrono::Utc>, DecodeError> {
    match value {
        Field::Str(s) => time::parse_str(s),
        Field::Number(n) => time::parse_epoch(n),
        other => Err(format!(
            "expected a date-time string or a number of Unix seconds, found {}",
            other.kind()
        )),
    }
    .map_err(|reason| DecodeError::attribute(attr.name(), reason))
}

fn string<'de>(m: &mut Members<'de>, attr: Attr) -> Result<Option<Cow<'de, str>>, DecodeError> {
    match m.take(attr) {
        None => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s)),
        Some(other) => Err(expected(attr, "a string", &other)),
    }
}

/// A string, or an integer read as its decimal string (`"id": 42` from plain publishers).
fn string_or_integer(m: &mut Members<'_>, attr: Attr) -> Result<Option<String>, DecodeError> {
    match m.take(attr) {
        None => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s.into_owned())),
        Some(Field::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(Field::Number(n)) => Err(DecodeError::attribute(
            attr.name(),
            format!("expected a string or an integer, found the number {n}"),
        )),
        Some(other) => Err(expected(attr, "a string or an integer", &other)),
    }
}

fn expected(attr: Attr, what: &str, found: &Field<'_>) -> DecodeError {
    DecodeError::attribute(
        attr.name(),
        format!("expected {what}, found {}", found.kind()),
    )
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
