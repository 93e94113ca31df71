//! The envelope: CloudEvents 1.0 JSON structured mode (wire contract v1).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::Event;

/// An event with its CloudEvents attributes: id, time, source, type, and extensions.
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
    /// A new envelope: a fresh UUID v7 id, the current time, `E::TYPE` and `E::VERSION`, no source.
    pub fn new(data: E) -> Self {
        let _ = data;
        todo!()
    }

    /// Encodes the envelope as CloudEvents JSON.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        todo!()
    }

    /// Decodes a message, checking that its `type` is `E::TYPE`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        RawEnvelope::parse(bytes)?.decode()
    }
}

impl<E> Envelope<E> {
    /// The event id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The event's data.
    pub fn data(&self) -> &E {
        &self.data
    }
    /// Takes the event's data.
    pub fn into_data(self) -> E {
        self.data
    }
    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlationid.as_deref()
    }
    /// The source.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The time.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }
    /// Sets the source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }
    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlationid = Some(id.into());
        self
    }
    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causationid = Some(id.into());
        self
    }
}

/// A decoded envelope whose `data` is still raw JSON: parsed once per message, then decoded
/// into each event type that handles it.
#[derive(Debug, Clone)]
pub struct RawEnvelope {
    pub(crate) header: Envelope<()>,
    pub(crate) data: Box<RawValue>,
}

impl RawEnvelope {
    /// Parses a message's bytes (CloudEvents or the plain `{"type","data","timestamp","id"}` shape).
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let _ = bytes;
        todo!()
    }
    /// The `type` attribute.
    pub fn event_type(&self) -> &str {
        &self.header.event_type
    }
    /// The `id` attribute.
    pub fn id(&self) -> &str {
        &self.header.id
    }
    /// Decodes `data` into `E`, checking the type.
    pub fn decode<E: Event>(&self) -> Result<Envelope<E>, DecodeError> {
        todo!()
    }
    /// `data` as a JSON value (no type check).
    pub fn to_value(&self) -> Result<Envelope<Value>, DecodeError> {
        todo!()
    }
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON.
    #[error("message is not JSON: {0}")]
    NotJson(String),
    /// No type.
    #[error("message has no `type` attribute")]
    MissingType,
    /// Type mismatch.
    #[error("event type mismatch: expected `{expected}`, found `{found}`")]
    TypeMismatch {
        /// expected
        expected: &'static str,
        /// found
        found: String,
    },
}

/// Why an envelope could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("event data could not be encoded as JSON: {0}")]
pub struct EncodeError(#[from] pub(crate) serde_json::Error);
