//! The envelope: CloudEvents 1.0 JSON structured mode (wire contract v1).
//!
//! [`Envelope`] is an event with its attributes; [`RawEnvelope`] is an incoming message whose
//! header has been read and whose `data` is still raw JSON, so that one message can be decoded
//! into each event type that handles it. The work is done in submodules: `encode` writes the
//! attributes in wire order straight into the output buffer (no intermediate
//! `serde_json::Value`), `decode` reads a message in one pass (known attributes matched on
//! borrowed keys and values, `data` kept as a `RawValue`, everything else into the extensions),
//! `finite` refuses floats JSON cannot carry while `data` is written, and `time` reads and
//! writes times and makes ids. `Serialize` and `Deserialize` go through the same code as
//! `encode` and `parse`.

use std::any::TypeId;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::Event;
use crate::event::event_name_problem;

mod decode;
mod encode;
mod errors;
mod finite;
mod raw;
mod serde_impl;
mod spec;
mod time;

pub use errors::{DecodeError, EncodeError, ExtensionError};
pub use raw::RawEnvelope;

use spec::{JSON_CONTENT_TYPE, RESERVED, SPECVERSION};

#[doc = include_str!("docs/envelope.md")]
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) event_type: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) datacontenttype: Option<String>,
    pub(crate) dataversion: Option<String>,
    pub(crate) correlationid: Option<String>,
    pub(crate) causationid: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) extensions: Map<String, Value>,
    pub(crate) data: E,
}

impl<E: Event> Envelope<E> {
    /// A new envelope: a fresh UUID v7 id, the current time (to the microsecond),
    /// `E::TYPE` and `E::VERSION`, and no source (the bus sets it to its service name).
    pub fn new(data: E) -> Self {
        Envelope::fresh(E::TYPE.to_owned(), E::VERSION, data)
    }

    /// Encodes the envelope as CloudEvents JSON (structured mode).
    ///
    /// `type` and `dataversion` are written from `E::TYPE` and `E::VERSION`, whatever the
    /// envelope was decoded from: the data is serialized from `E`, so it has `E`'s shape.
    /// An empty source is written as `"eventbus"`.
    ///
    /// # Errors
    ///
    /// What no receiver could read, named in [`EncodeError::field`]: an empty `id`, a time
    /// outside the years 0000 to 9999 that RFC 3339 can write, a float in the data that is
    /// `NaN` or infinite (`data.total`; serde_json would write `null`), or `E`'s `Serialize`
    /// failing (a map with non-string keys, a custom error).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(256);
        self.encode_into(&mut buf)?;
        Ok(buf)
    }

    /// Like [`encode`](Envelope::encode), appending to `buf` so that a buffer can be reused.
    /// On error `buf` is left as it was.
    ///
    /// # Errors
    ///
    /// As [`encode`](Envelope::encode).
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode::write(
            buf,
            &self.attributes(),
            &self.data,
            E::TYPE,
            Some(encode::Version::Number(E::VERSION)),
        )
    }

    /// Decodes a message, checking that its `type` is `E::TYPE`.
    ///
    /// # Errors
    ///
    /// See [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let RawEnvelope { header, data } = RawEnvelope::parse(bytes)?;
        check_type::<E>(&header.event_type)?;
        check_json(&header)?;
        let data = decode_data(&data, E::TYPE)?;
        Ok(header.with_data(data))
    }
}

impl<E: Serialize> Envelope<E> {
    /// A new envelope of data that is not an [`Event`], with the type and version given: a
    /// fresh UUID v7 id, the current time, no source (the bus sets its service name when it
    /// publishes; [`with_source`](Envelope::with_source) sets another). For tools and bridges
    /// that publish events by name, such as the `eventbus` CLI; write it with
    /// [`encode_untyped`](Envelope::encode_untyped).
    ///
    /// ```
    /// use eventbus::Envelope;
    /// use serde_json::json;
    ///
    /// let envelope = Envelope::untyped("user_created", 1, json!({"user_id": 1001}))?
    ///     .with_source("accounts");
    /// assert_eq!(envelope.event_type(), "user_created");
    /// assert_eq!(envelope.version(), Some(1));
    /// let bytes = envelope.encode_untyped()?;
    /// # let _ = bytes;
    /// assert!(Envelope::untyped("", 1, json!({})).is_err());
    /// # Ok::<(), eventbus::EncodeError>(())
    /// ```
    ///
    /// The data can be any `Serialize` value: a `serde_json::Value`, or a
    /// `Box<serde_json::value::RawValue>` to send JSON exactly as given.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] on the field `type` when the type breaks the naming rule of event
    /// types (see [`Event`](Event#names-channels-and-keys)): empty, or containing whitespace,
    /// a glob character (`* ? [ ] \`) or a brace.
    pub fn untyped(
        event_type: impl Into<String>,
        version: u32,
        data: E,
    ) -> Result<Self, EncodeError> {
        let event_type = event_type.into();
        if let Some(problem) = event_name_problem(&event_type) {
            return Err(EncodeError::new(
                "type",
                format!("{event_type:?} {problem}"),
            ));
        }
        Ok(Envelope::fresh(event_type, version, data))
    }

    /// Encodes the envelope with the `type` and `dataversion` it holds, for data that is not an
    /// [`Event`], such as an `Envelope<serde_json::Value>` that a pattern handler forwards.
    ///
    /// # Errors
    ///
    /// As [`encode`](Envelope::encode), and when the envelope's type is empty.
    pub fn encode_untyped(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(256);
        encode::write(
            &mut buf,
            &self.attributes(),
            &self.data,
            &self.event_type,
            self.dataversion.as_deref().map(encode::Version::Text),
        )?;
        Ok(buf)
    }
}

impl<E> Envelope<E> {
    /// A new envelope: a fresh UUID v7 id, the current time, no source.
    fn fresh(event_type: String, version: u32, data: E) -> Self {
        let (id, time) = time::new_id_and_time();
        Envelope {
            id,
            source: String::new(),
            event_type,
            time,
            datacontenttype: None,
            dataversion: Some(version.to_string()),
            correlationid: None,
            causationid: None,
            traceparent: None,
            extensions: Map::new(),
            data,
        }
    }

    /// The attributes the encoder writes besides `type`, `dataversion` and `data`.
    fn attributes(&self) -> encode::Attributes<'_> {
        encode::Attributes {
            id: &self.id,
            source: &self.source,
            time: &self.time,
            datacontenttype: self.datacontenttype.as_deref(),
            optional: [
                ("correlationid", self.correlationid.as_deref()),
                ("causationid", self.causationid.as_deref()),
                ("traceparent", self.traceparent.as_deref()),
            ],
            extensions: &self.extensions,
        }
    }

    /// The event id: a UUID v7 for envelopes made here, whatever the publisher sent otherwise
    /// (an integer id is read as its decimal string).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event's data.
    pub fn data(&self) -> &E {
        &self.data
    }

    /// The event's data, mutably.
    pub fn data_mut(&mut self) -> &mut E {
        &mut self.data
    }

    /// Takes the event's data.
    pub fn into_data(self) -> E {
        self.data
    }

    /// Splits the envelope into its header (the attributes, with `()` as data) and its data.
    /// [`with_data`](Envelope::with_data) puts them back together.
    pub fn into_parts(self) -> (Envelope<()>, E) {
        let Envelope {
            id,
            source,
            event_type,
            time,
            datacontenttype,
            dataversion,
            correlationid,
            causationid,
            traceparent,
            extensions,
            data,
        } = self;
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
            extensions,
            data: (),
        };
        (header, data)
    }

    /// The same attributes with other data. The type and dataversion are kept as they are;
    /// [`encode`](Envelope::encode) writes those of the new data's [`Event`] type.
    #[must_use]
    pub fn with_data<U>(self, data: U) -> Envelope<U> {
        self.into_parts().0.replace_unit(data)
    }

    /// A copy of the attributes around other data; `self` stays as it is.
    pub(crate) fn copy_onto<U>(&self, data: U) -> Envelope<U> {
        Envelope {
            id: self.id.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            time: self.time,
            datacontenttype: self.datacontenttype.clone(),
            dataversion: self.dataversion.clone(),
            correlationid: self.correlationid.clone(),
            causationid: self.causationid.clone(),
            traceparent: self.traceparent.clone(),
            extensions: self.extensions.clone(),
            data,
        }
    }

    /// The same attributes with the data transformed by `f`.
    pub fn map<U>(self, f: impl FnOnce(E) -> U) -> Envelope<U> {
        let (header, data) = self.into_parts();
        header.replace_unit(f(data))
    }

    /// The correlation id (`correlationid`): the id shared by every event of one workflow.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlationid.as_deref()
    }

    /// The causation id (`causationid`): the id of the event that caused this one.
    pub fn causation_id(&self) -> Option<&str> {
        self.causationid.as_deref()
    }

    /// The W3C trace context (`traceparent`), as sent.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The source: the publishing service's name as given to the bus, or `""` when it was not
    /// set (a new envelope) or the message had none (as plain JSON publishers send).
    ///
    /// An empty source is written as `"eventbus"`, since CloudEvents requires one.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The event type (`type`), such as `"user_created"`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The time the event happened (`time`, or the plain shape's `timestamp`), in UTC to the
    /// microsecond; for a message that carried neither, the time it was decoded.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// The CloudEvents version: always `"1.0"` (messages without `specversion` are read as 1.0,
    /// others are refused).
    pub fn specversion(&self) -> &'static str {
        SPECVERSION
    }

    /// The content type of the data: `datacontenttype` as sent, `"application/json"` when absent
    /// (as CloudEvents' JSON format says).
    pub fn datacontenttype(&self) -> &str {
        self.datacontenttype.as_deref().unwrap_or(JSON_CONTENT_TYPE)
    }

    /// The schema version of the data (`dataversion`) as sent, such as `"2"`; `None` when the
    /// message had none. A new envelope holds `E::VERSION`.
    pub fn dataversion(&self) -> Option<&str> {
        self.dataversion.as_deref()
    }

    /// The schema version of the data as a number: [`dataversion`](Envelope::dataversion) when
    /// it is a decimal `u32`, `None` otherwise (absent, or something like `"2.1"`). Publishers
    /// that send no `dataversion` are conventionally at version 1.
    pub fn version(&self) -> Option<u32> {
        self.dataversion.as_deref()?.parse().ok()
    }

    /// Every attribute beyond the ones with their own accessor: extensions set with
    /// [`with_extension`](Envelope::with_extension), and whatever unknown attributes an
    /// incoming message had (including the optional CloudEvents attributes `subject` and
    /// `dataschema`). They are written back, in name order, by [`encode`](Envelope::encode).
    pub fn extensions(&self) -> &Map<String, Value> {
        &self.extensions
    }

    /// One extension attribute by name.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.extensions.get(name)
    }

    /// Sets the id. The bus makes UUID v7 ids; set one yourself to republish an event under
    /// its original id or to get reproducible output in tests. It must not be empty, which
    /// receivers refuse: encoding an envelope with an empty id is an [`EncodeError`].
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the time, truncated to the microsecond (the precision of the wire format).
    #[must_use]
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = time::truncate(time);
        self
    }

    /// Sets the source. The bus sets it to its service name when publishing.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlationid = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causationid = Some(id.into());
        self
    }

    /// Sets the W3C trace context (`traceparent`, such as
    /// `"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`). It is not checked.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets an extension attribute.
    ///
    /// ```
    /// # use eventbus::{Envelope, Event};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; const CHANNEL: &'static str = "events:ping"; }
    /// let envelope = Envelope::new(Ping).with_extension("tenant", "acme")?;
    /// assert_eq!(envelope.extension("tenant"), Some(&"acme".into()));
    /// assert!(Envelope::new(Ping).with_extension("tenantId", "acme").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`set_extension`](Envelope::set_extension).
    pub fn with_extension(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<Self, ExtensionError> {
        self.set_extension(name, value)?;
        Ok(self)
    }

    /// Sets an extension attribute, returning the value it replaces.
    ///
    /// # Errors
    ///
    /// When the name is not 1 or more lowercase ASCII letters and digits (as CloudEvents
    /// requires), when it is one of the attributes with their own accessor (`id`, `time`,
    /// `traceparent`, ...), or when the value is not a string, a number or a boolean.
    pub fn set_extension(
        &mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<Option<Value>, ExtensionError> {
        let name = name.into();
        check_extension_name(&name)?;
        let value = value.into();
        match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            ref other => {
                return Err(ExtensionError::InvalidValue {
                    name,
                    found: kind(other),
                });
            }
        }
        Ok(self.extensions.insert(name, value))
    }

    /// Removes an extension attribute, returning its value.
    pub fn remove_extension(&mut self, name: &str) -> Option<Value> {
        self.extensions.remove(name)
    }
}

impl Envelope<()> {
    /// Moves the attributes onto new data without going through `into_parts`.
    fn replace_unit<U>(self, data: U) -> Envelope<U> {
        Envelope {
            id: self.id,
            source: self.source,
            event_type: self.event_type,
            time: self.time,
            datacontenttype: self.datacontenttype,
            dataversion: self.dataversion,
            correlationid: self.correlationid,
            causationid: self.causationid,
            traceparent: self.traceparent,
            extensions: self.extensions,
            data,
        }
    }
}

/// Checks an extension name: lowercase ASCII letters and digits, not reserved.
fn check_extension_name(name: &str) -> Result<(), ExtensionError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(ExtensionError::InvalidName(name.to_owned()));
    }
    if RESERVED.contains(&name) {
        return Err(ExtensionError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// A JSON value's kind, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_type<E: Event>(found: &str) -> Result<(), DecodeError> {
    if found == E::TYPE {
        Ok(())
    } else {
        Err(DecodeError::TypeMismatch {
            expected: E::TYPE,
            found: found.to_owned(),
        })
    }
}

/// Checks that `data` is JSON, as a typed event needs: `datacontenttype` absent (or empty),
/// `application/json`, `text/json` or `application/<anything>+json`, parameters such as
/// `; charset=utf-8` aside, in any case.
fn check_json(header: &Envelope<()>) -> Result<(), DecodeError> {
    match header.datacontenttype.as_deref() {
        Some(content_type) if !is_json(content_type) => Err(DecodeError::ContentType {
            content_type: content_type.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.is_empty() {
        return true;
    }
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let json = subtype.eq_ignore_ascii_case("json");
    if kind.eq_ignore_ascii_case("text") {
        return json;
    }
    let suffix = subtype.len() > 5
        && subtype
            .get(subtype.len() - 5..)
            .is_some_and(|end| end.eq_ignore_ascii_case("+json"));
    kind.eq_ignore_ascii_case("application") && (json || suffix)
}

/// Deserializes `data`. The fast path is plain serde_json; on failure the data is read again
/// with serde_path_to_error to say where it went wrong.
fn decode_data<T: DeserializeOwned>(raw: &RawValue, event_type: &str) -> Result<T, DecodeError> {
    match serde_json::from_str(raw.get()) {
        Ok(data) => Ok(data),
        Err(first) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            let (path, error) = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) => {
                    let path = e.path().to_string();
                    (path, e.into_inner())
                }
                // Not expected: the same input gives the same result. Report the first error.
                Ok(_) => (".".to_owned(), first),
            };
            Err(DecodeError::InvalidData {
                event_type: event_type.to_owned(),
                path: if path == "." { String::new() } else { path },
                message: without_position(&error),
            })
        }
    }
}

/// serde_json's message without the " at line L column C" it appends: positions inside `data`
/// would be misread as positions in the message.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct UserCreated {
        user_id: u64,
        name: String,
    }

    impl Event for UserCreated {
        const TYPE: &'static str = "user_created";
        const VERSION: u32 = 2;
        const CHANNEL: &'static str = "events:user_created";
    }

    fn sample() -> Envelope<UserCreated> {
        Envelope::new(UserCreated {
            user_id: 1,
            name: "Ada".into(),
        })
    }

    #[test]
    fn new_envelope_has_v7_id_type_and_version() {
        let e = sample();
        let id = uuid::Uuid::parse_str(e.id()).expect("a uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(e.event_type(), "user_created");
        assert_eq!(e.dataversion(), Some("2"));
        assert_eq!(e.version(), Some(2));
        assert_eq!(e.source(), "");
        assert_eq!(e.datacontenttype(), "application/json");
        assert_eq!(e.time().timestamp_subsec_nanos() % 1000, 0);
        assert_ne!(sample().id(), e.id());
    }

    #[test]
    fn extension_names_are_checked() {
        assert!(check_extension_name("tenant").is_ok());
        assert!(check_extension_name("abc123").is_ok());
        for bad in ["", "Tenant", "tenant_id", "tenant-id", "ténant", "a b"] {
            assert_eq!(
                check_extension_name(bad),
                Err(ExtensionError::InvalidName(bad.to_owned())),
                "{bad:?}"
            );
        }
        for reserved in RESERVED {
            assert_eq!(
                check_extension_name(reserved),
                Err(ExtensionError::Reserved((*reserved).to_owned()))
            );
        }
    }

    #[test]
    fn extension_values_are_checked() {
        let mut e = sample();
        assert_eq!(e.set_extension("n", 5).unwrap(), None);
        assert_eq!(e.set_extension("n", true).unwrap(), Some(Value::from(5)));
        let err = e.set_extension("n", Value::Null).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for extension `n`: extension values are strings, numbers or booleans, found null"
        );
        assert!(e.set_extension("n", serde_json::json!([1])).is_err());
        assert_eq!(e.remove_extension("n"), Some(Value::Bool(true)));
        assert!(e.extensions().is_empty());
    }

    #[test]
    fn parts_map_and_with_data_keep_the_header() {
        let e = sample()
            .with_source("accounts")
            .with_correlation_id("c")
            .with_causation_id("k")
            .with_traceparent("t");
        let (header, data) = e.clone().into_parts();
        assert_eq!(header.clone().with_data(data.clone()), e);
        let mapped = e.clone().map(|d| d.user_id);
        assert_eq!(*mapped.data(), 1);
        assert_eq!(mapped.id(), e.id());
        assert_eq!(mapped.source(), "accounts");
        assert_eq!(mapped.correlation_id(), Some("c"));
        assert_eq!(mapped.causation_id(), Some("k"));
        assert_eq!(mapped.traceparent(), Some("t"));
        let mut e = e;
        e.data_mut().user_id = 9;
        assert_eq!(e.into_data().user_id, 9);
    }

    #[test]
    fn version_reads_decimal_only() {
        let mut e = sample();
        e.dataversion = Some("2.1".into());
        assert_eq!(e.version(), None);
        e.dataversion = None;
        assert_eq!(e.version(), None);
    }

    #[test]
    fn decode_data_reports_the_path_without_positions() {
        let raw = RawValue::from_string(r#"{"user_id":"x","name":"a"}"#.into()).unwrap();
        let err = decode_data::<UserCreated>(&raw, "user_created").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`data` does not fit `user_created` at `user_id`: invalid type: string \"x\", expected u64"
        );
        let raw = RawValue::from_string(r#"{"name":"a"}"#.into()).unwrap();
        let err = decode_data::<UserCreated>(&raw, "user_created").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`data` does not fit `user_created`: missing field `user_id`"
        );
    }

    #[test]
    fn untyped_encode_needs_a_type() {
        let mut e = sample().map(|d| serde_json::to_value(d).unwrap());
        e.event_type.clear();
        let err = e.encode_untyped().unwrap_err();
        assert_eq!(err.field(), "type");
        assert!(
            err.to_string().ends_with("`type`: must not be empty"),
            "{err}"
        );
    }
}
