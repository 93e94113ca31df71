//! The CloudEvents 1.0 constants of the wire contract.

/// The CloudEvents version this crate reads and writes.
pub(super) const SPECVERSION: &str = "1.0";

/// The content type of `data` when the message does not say.
pub(super) const JSON_CONTENT_TYPE: &str = "application/json";

/// The `source` written for an envelope whose source is empty.
pub(super) const DEFAULT_SOURCE: &str = "eventbus";

/// Attribute names that have their own field and accessor; [`Envelope::with_extension`]
/// refuses them.
pub(super) const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "data",
    "dataversion",
    "correlationid",
    "causationid",
    "traceparent",
];
