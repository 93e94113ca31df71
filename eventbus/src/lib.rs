#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod envelope;
mod event;

pub use envelope::{DecodeError, EncodeError, Envelope, RawEnvelope};
pub use event::{Event, Topic};

/// `#[derive(Event)]`: implements [`Event`] for a struct or enum. See [`Event`] for the attributes.
#[cfg(feature = "derive")]
pub use eventbus_derive::Event;

#[doc(hidden)]
pub mod __private {
    pub use std::borrow::Cow;
    pub use std::format;
    pub use std::string::ToString;
}
