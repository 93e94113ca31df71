//! What a handler takes as its first argument, and how it is made from a delivery.

use std::any::{Any, TypeId};
use std::sync::Arc;

use super::Delivery;
use crate::Topic;
use crate::envelope::{DecodeError, Envelope, RawEnvelope};
use crate::event::Event;
use crate::transport::Message;

/// Decodes a raw envelope into the payload of one argument type.
pub(crate) type DecodeFn = fn(&RawEnvelope) -> Result<Arc<dyn Any + Send + Sync>, DecodeError>;

/// What a handler's first argument needs from a message.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
#[allow(unreachable_pub)]
pub enum ArgKind {
    /// A decoded envelope; `key` identifies the decoded type, so it is decoded once per type.
    Envelope {
        key: fn() -> TypeId,
        decode: DecodeFn,
        event_type: &'static str,
        /// The schema version handled; `None` for untyped envelopes.
        version: Option<u32>,
        /// Whether the event travels durably, read through a consumer group.
        durable: bool,
        /// The JSON Schema of the data ([`Event::data_schema`]).
        schema: fn() -> Option<serde_json::Value>,
        /// The channel, or its template for a keyed type (`""` for untyped envelopes).
        channel: &'static str,
    },
    /// The raw message.
    Raw,
}

/// How a handler's first argument is described to the bus.
#[doc(hidden)]
#[derive(Debug, Clone)]
#[allow(unreachable_pub)]
pub struct ArgSpec {
    pub(crate) topic: Option<Topic>,
    pub(crate) kind: ArgKind,
}

fn decode_typed<E: Event>(raw: &RawEnvelope) -> Result<Arc<dyn Any + Send + Sync>, DecodeError> {
    Ok(Arc::new(raw.decode::<E>()?))
}

fn decode_data<E: Event>(raw: &RawEnvelope) -> Result<Arc<dyn Any + Send + Sync>, DecodeError> {
    Ok(Arc::new(raw.decode_data::<E>()?))
}

fn decode_value(raw: &RawEnvelope) -> Result<Arc<dyn Any + Send + Sync>, DecodeError> {
    Ok(Arc::new(raw.to_value()?))
}

/// Markers that tell the argument forms apart; never named by users.
#[doc(hidden)]
#[allow(unreachable_pub)]
pub mod marker {
    /// The handler takes the event's data.
    #[derive(Debug)]
    pub struct Data;
    /// The handler takes `Envelope<E>`.
    #[derive(Debug)]
    pub struct Full;
    /// The handler takes `Envelope<serde_json::Value>`.
    #[derive(Debug)]
    pub struct Value;
    /// The handler takes the raw `Message`.
    #[derive(Debug)]
    pub struct Raw;
}

/// A type a handler can take as its first argument: `E`, `Envelope<E>`,
/// `Envelope<serde_json::Value>` or [`Message`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the first argument of a handler",
    note = "the first argument is what the handler receives, by value, not by reference: an event `E` (a type with `#[derive(Event)]`), `Envelope<E>`, `Envelope<serde_json::Value>` or `eventbus::Message`"
)]
pub trait EventArg<M>: Sized + Send + 'static {
    #[doc(hidden)]
    fn spec() -> ArgSpec;
    #[doc(hidden)]
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError>;
}

impl<E: Event> EventArg<marker::Data> for E {
    fn spec() -> ArgSpec {
        // Only the data is decoded: the header's strings are not copied for it.
        ArgSpec {
            topic: Some(Topic::of::<E>()),
            kind: ArgKind::Envelope {
                key: TypeId::of::<E>,
                decode: decode_data::<E>,
                event_type: E::TYPE,
                version: Some(E::VERSION),
                durable: E::DURABLE,
                schema: E::data_schema,
                channel: E::CHANNEL,
            },
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        delivery.take_envelope(|raw| raw.decode_data::<E>(), E::__clone_event)
    }
}

impl<E: Event> EventArg<marker::Full> for Envelope<E> {
    fn spec() -> ArgSpec {
        ArgSpec {
            topic: Some(Topic::of::<E>()),
            kind: ArgKind::Envelope {
                key: TypeId::of::<Envelope<E>>,
                decode: decode_typed::<E>,
                event_type: E::TYPE,
                version: Some(E::VERSION),
                durable: E::DURABLE,
                schema: E::data_schema,
                channel: E::CHANNEL,
            },
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        delivery.take_envelope(
            |raw| raw.decode::<E>(),
            |envelope| Some(envelope.copy_onto(envelope.data().__clone_event()?)),
        )
    }
}

impl EventArg<marker::Value> for Envelope<serde_json::Value> {
    fn spec() -> ArgSpec {
        ArgSpec {
            topic: None,
            kind: ArgKind::Envelope {
                key: TypeId::of::<Envelope<serde_json::Value>>,
                decode: decode_value,
                event_type: "*",
                version: None,
                durable: false,
                schema: || None,
                channel: "",
            },
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        delivery.take_envelope(|raw| raw.to_value(), |envelope| Some(envelope.clone()))
    }
}

impl EventArg<marker::Raw> for Message {
    fn spec() -> ArgSpec {
        ArgSpec {
            topic: None,
            kind: ArgKind::Raw,
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        Ok(delivery.message.clone())
    }
}
