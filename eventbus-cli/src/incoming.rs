//! One message as `tail` receives it, and what it decodes to.

use bytes::Bytes;
use eventbus::{DecodeError, Envelope, RawEnvelope};
use serde_json::Value;

/// A message from a pub/sub channel or a stream entry.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    /// The channel, or the stream key.
    pub(crate) channel: String,
    /// The stream entry id, for a message read from a stream.
    pub(crate) entry_id: Option<String>,
    /// The payload as published (for a stream entry, its `envelope` field).
    pub(crate) payload: Bytes,
    /// Why the message cannot be an envelope before reading it (a stream entry without an
    /// `envelope` field).
    pub(crate) unreadable: Option<String>,
}

impl Incoming {
    /// Decodes the payload as the bus does: a CloudEvents envelope or the plain
    /// `{"type","data","timestamp","id"}` shape, with its data as JSON.
    pub(crate) fn decode(&self) -> Result<Envelope<Value>, String> {
        if let Some(why) = &self.unreadable {
            return Err(why.clone());
        }
        let decoded: Result<_, DecodeError> =
            RawEnvelope::parse(&self.payload).and_then(|raw| raw.to_value());
        decoded.map_err(|e| e.to_string())
    }

    /// The payload as text (invalid UTF-8 replaced), for a decode failure.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}
