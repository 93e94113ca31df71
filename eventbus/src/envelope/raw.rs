//! [`RawEnvelope`]: a message whose header is read and whose data is still raw JSON.

use super::*;

/// An incoming message whose header has been read and whose `data` is still raw JSON: parsed
/// once per message, then decoded into each event type that handles it.
///
/// ```
/// use eventbus::{Event, RawEnvelope};
/// # #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct UserCreated { user_id: u64 }
/// # impl Event for UserCreated { const TYPE: &'static str = "user_created"; const CHANNEL: &'static str = "events:user_created"; }
///
/// let raw = RawEnvelope::parse(br#"{"type":"user_created","id":7,"data":{"user_id":1001}}"#)?;
/// assert_eq!(raw.event_type(), "user_created");
/// assert_eq!(raw.id(), "7");
/// assert_eq!(raw.decode::<UserCreated>()?.data(), &UserCreated { user_id: 1001 });
/// assert_eq!(raw.to_value()?.data()["user_id"], 1001);
/// # Ok::<(), eventbus::DecodeError>(())
/// ```
///
/// Cloning copies the header's strings and the raw data; share one behind an `Arc` rather than
/// cloning it per handler. Decoding only borrows it.
#[derive(Debug, Clone)]
pub struct RawEnvelope {
    pub(crate) header: Envelope<()>,
    pub(crate) data: Box<RawValue>,
}

impl RawEnvelope {
    /// Parses a message's bytes: a CloudEvents 1.0 JSON event, or the plain
    /// `{"type","data","timestamp","id"}` shape (see [`Envelope`] for how it is read).
    ///
    /// # Errors
    ///
    /// See [`DecodeError`]: everything but [`TypeMismatch`](DecodeError::TypeMismatch),
    /// [`ContentType`](DecodeError::ContentType) and [`InvalidData`](DecodeError::InvalidData),
    /// which come from [`decode`](RawEnvelope::decode).
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::parse(bytes)
    }

    /// The `type` attribute.
    pub fn event_type(&self) -> &str {
        &self.header.event_type
    }

    /// The `id` attribute.
    pub fn id(&self) -> &str {
        &self.header.id
    }

    /// The attributes, with `()` as data.
    pub fn header(&self) -> &Envelope<()> {
        &self.header
    }

    /// The `data` member as raw JSON (`null` when the message had none).
    pub fn data(&self) -> &RawValue {
        &self.data
    }

    /// Splits into the header and the raw data.
    pub fn into_parts(self) -> (Envelope<()>, Box<RawValue>) {
        (self.header, self.data)
    }

    /// Decodes `data` into `E`, checking that the type is `E::TYPE` and that `data` is JSON.
    ///
    /// # Errors
    ///
    /// [`TypeMismatch`](DecodeError::TypeMismatch), [`ContentType`](DecodeError::ContentType)
    /// or [`InvalidData`](DecodeError::InvalidData).
    pub fn decode<E: Event>(&self) -> Result<Envelope<E>, DecodeError> {
        let data = self.decode_data::<E>()?;
        Ok(self.header.clone().with_data(data))
    }

    /// Decodes only `data` into `E`, checking the type and the content type: for handlers that
    /// take the event, not the envelope (no header strings are copied).
    ///
    /// # Errors
    ///
    /// As [`decode`](RawEnvelope::decode).
    pub fn decode_data<E: Event>(&self) -> Result<E, DecodeError> {
        check_type::<E>(&self.header.event_type)?;
        check_json(&self.header)?;
        decode_data(&self.data, E::TYPE)
    }

    /// `data` as a JSON value, whatever the type and the content type (for pattern handlers:
    /// data declared as `application/xml` or `text/plain` is usually a JSON string).
    ///
    /// # Errors
    ///
    /// [`InvalidData`](DecodeError::InvalidData) only when `data` nests deeper than
    /// serde_json's recursion limit (128).
    pub fn to_value(&self) -> Result<Envelope<Value>, DecodeError> {
        let data = decode_data(&self.data, &self.header.event_type)?;
        Ok(self.header.clone().with_data(data))
    }

    /// Encodes the message again, `data` byte for byte as it came (for relays and dead letters).
    ///
    /// # Errors
    ///
    /// As [`Envelope::encode`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(128 + self.data.get().len());
        encode::write(
            &mut buf,
            &self.header.attributes(),
            &*self.data,
            &self.header.event_type,
            self.header
                .dataversion
                .as_deref()
                .map(encode::Version::Text),
        )?;
        Ok(buf)
    }
}

impl RawEnvelope {
    /// Decodes `data` into any `E`, checking the content type unless `E` is a JSON value.
    pub(super) fn into_envelope<E: DeserializeOwned + 'static>(
        self,
    ) -> Result<Envelope<E>, DecodeError> {
        if TypeId::of::<E>() != TypeId::of::<Value>() {
            check_json(&self.header)?;
        }
        let data = decode_data(&self.data, &self.header.event_type)?;
        Ok(self.header.with_data(data))
    }
}
