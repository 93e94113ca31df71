//! Why an envelope could not be decoded, encoded or extended.

/// Why a message could not be decoded.
///
/// The messages are meant for logs: they name the attribute or the place in `data` at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message is not valid JSON; serde_json's message, with line and column.
    #[error("message is not JSON: {0}")]
    NotJson(String),

    /// The message is not UTF-8 text.
    #[error("message is not UTF-8: invalid byte at offset {valid_up_to}")]
    NotUtf8 {
        /// The length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },

    /// The message is larger than the bus accepts; it was not read.
    #[error("message is too large: {size} bytes, the limit is {max}")]
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The largest size accepted.
        max: usize,
    },

    /// The message is JSON, but not an object.
    #[error("message is not a JSON object: found {found}")]
    NotAnObject {
        /// What was found: `"an array"`, `"a string"`, `"a number"`, `"a boolean"`, `"null"`.
        found: &'static str,
    },

    /// The message has no `type` attribute (or it is `null`).
    #[error("message has no `type` attribute")]
    MissingType,

    /// The message's `type` is not the type asked for.
    #[error("event type mismatch: expected `{expected}`, found `{found}`")]
    TypeMismatch {
        /// The type asked for (`E::TYPE`).
        expected: &'static str,
        /// The message's `type`.
        found: String,
    },

    /// The message's `specversion` is not `"1.0"`.
    #[error("unsupported specversion `{0}`: this bus reads CloudEvents 1.0")]
    UnsupportedSpecVersion(String),

    /// An attribute has a value of the wrong JSON type or form, or appears twice.
    #[error("invalid `{name}` attribute: {reason}")]
    InvalidAttribute {
        /// The attribute's name (`time`, `id`, ...).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// `datacontenttype` says `data` is not JSON (`application/xml`, `text/plain`), so it cannot
    /// be decoded into an event type. [`RawEnvelope::parse`](crate::RawEnvelope::parse), [`RawEnvelope::to_value`](crate::RawEnvelope::to_value) and
    /// `Envelope<serde_json::Value>` still read such messages.
    #[error("data is `{content_type}`, not JSON")]
    ContentType {
        /// The message's `datacontenttype`.
        content_type: String,
    },

    /// `data` does not deserialize into the event type.
    #[error(
        "`data` does not fit `{event_type}`{}: {message}",
        if path.is_empty() { String::new() } else { format!(" at `{path}`") }
    )]
    InvalidData {
        /// The event type being decoded.
        event_type: String,
        /// Where in `data` it went wrong (`items[0].sku`); empty at the top.
        path: String,
        /// serde's message, such as ``missing field `user_id` ``.
        message: String,
    },
}

impl DecodeError {
    pub(super) fn attribute(name: &str, reason: impl Into<String>) -> Self {
        DecodeError::InvalidAttribute {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Why an envelope could not be encoded: the member at fault and what is wrong with it.
///
/// ```
/// # use eventbus::{Envelope, Event};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderPlaced { total: f64 }
/// # impl Event for OrderPlaced { const TYPE: &'static str = "order_placed"; const CHANNEL: &'static str = "events:order_placed"; }
///
/// let err = Envelope::new(OrderPlaced { total: f64::NAN }).encode().unwrap_err();
/// assert_eq!(err.field(), "data.total");
/// let err = Envelope::new(OrderPlaced { total: 1.0 }).with_id("").encode().unwrap_err();
/// assert_eq!(err.to_string(), "event could not be encoded as JSON: `id`: must not be empty");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event could not be encoded as JSON: `{field}`: {reason}")]
pub struct EncodeError {
    field: String,
    reason: String,
}

impl EncodeError {
    pub(super) fn new(field: &str, reason: impl Into<String>) -> Self {
        EncodeError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The member at fault: an attribute (`id`, `type`, `time`, an extension's name), `data`,
    /// or a path into the data (`data.total`, `data.items[0].price`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it, such as ``must not be empty``.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Why an extension attribute could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The name is not 1 or more lowercase ASCII letters and digits.
    #[error(
        "invalid extension name `{0}`: CloudEvents attribute names are lowercase ASCII letters and digits only"
    )]
    InvalidName(String),

    /// The name belongs to an attribute with its own accessor.
    #[error("extension name `{0}` is reserved: the envelope sets that attribute itself")]
    Reserved(String),

    /// The value is not a string, a number or a boolean.
    #[error(
        "invalid value for extension `{name}`: extension values are strings, numbers or booleans, found {found}"
    )]
    InvalidValue {
        /// The extension's name.
        name: String,
        /// What was given: `"null"`, `"an array"` or `"an object"`.
        found: &'static str,
    },
}
