//! Handlers: plain async fns and closures, adapted to the bus.
//!
//! A handler's first argument says what it receives and so where it listens:
//!
//! | first argument | receives | listens on |
//! |---|---|---|
//! | `E` where `E: Event` | the event's data | `E`'s channel (or pattern, for keyed events) |
//! | `Envelope<E>` | data with id, time, source, correlation | the same |
//! | `Envelope<serde_json::Value>` | any envelope, untyped | the topic you give |
//! | [`Message`] | the raw payload, envelope or not | the topic you give |
//!
//! Up to three more arguments can follow, each [`FromContext`]: [`State<S>`] for shared
//! state given to the builder, and [`EventBus`] to publish follow-up events. The handler
//! returns `()` or `Result<(), Err>` for any `Err` that converts into
//! `Box<dyn Error + Send + Sync>` (`anyhow::Error` and thiserror types do).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use crate::Topic;
use crate::bus::{BusInner, EventBus};
use crate::envelope::{DecodeError, Envelope, RawEnvelope};
use crate::event::Event;
use crate::transport::{BoxError, BoxFuture, Message};

/// Decodes a raw envelope into the payload of one argument type.
pub(crate) type DecodeFn = fn(&RawEnvelope) -> Result<Arc<dyn Any + Send + Sync>, DecodeError>;

/// What a handler's first argument needs from a message.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum ArgKind {
    /// A decoded envelope; `key` identifies the decoded type, so it is decoded once per type.
    Envelope {
        key: fn() -> TypeId,
        decode: DecodeFn,
        event_type: &'static str,
    },
    /// The raw message.
    Raw,
}

/// How a handler's first argument is described to the bus.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ArgSpec {
    pub(crate) topic: Option<Topic>,
    pub(crate) kind: ArgKind,
}

/// One message on its way to one handler.
#[doc(hidden)]
pub struct Delivery {
    pub(crate) message: Message,
    pub(crate) raw: Option<Arc<RawEnvelope>>,
    pub(crate) decoded: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("event_id", &self.event_id())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn event_id(&self) -> Option<&str> {
        self.raw.as_deref().map(RawEnvelope::id)
    }

    fn take_envelope<T: Send + Sync + 'static>(
        &mut self,
        decode: impl FnOnce(&RawEnvelope) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if let Some(shared) = self.decoded.take()
            && let Ok(typed) = shared.downcast::<T>()
            && let Ok(owned) = Arc::try_unwrap(typed)
        {
            return Ok(owned);
        }
        match &self.raw {
            Some(raw) => decode(raw),
            None => Err(DecodeError::MissingType),
        }
    }
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
    note = "a handler's first argument is the event `E` (with `E: eventbus::Event`), `Envelope<E>`, `Envelope<serde_json::Value>` or `eventbus::Message`"
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
            },
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        delivery.take_envelope(|raw| raw.decode_data::<E>())
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
            },
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        delivery.take_envelope(|raw| raw.decode::<E>())
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
            },
        }
    }
    fn extract(delivery: &mut Delivery) -> Result<Self, DecodeError> {
        delivery.take_envelope(|raw| raw.to_value())
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

/// What a handler run returns: `()` or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "a handler must return `()` or `Result<(), E>`, not `{Self}`",
    note = "the error type must convert into `Box<dyn std::error::Error + Send + Sync>` (anyhow::Error and thiserror types do)"
)]
pub trait HandlerResult: Send + 'static {
    /// Into a plain result.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<Err: Into<BoxError> + Send + 'static> HandlerResult for Result<(), Err> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// What the bus hands to a run, from which extra handler arguments are made.
#[derive(Clone)]
pub struct HandlerContext {
    pub(crate) bus: Weak<BusInner>,
    pub(crate) state: Arc<StateMap>,
}

impl std::fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerContext").finish_non_exhaustive()
    }
}

/// Shared state registered with [`EventBusBuilder::state`](crate::EventBusBuilder::state).
#[derive(Default)]
pub(crate) struct StateMap {
    pub(crate) values: HashMap<TypeId, (Box<dyn Any + Send + Sync>, &'static str)>,
}

/// A handler argument made from the run's context.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an extra argument of a handler",
    note = "after the event, a handler may take `eventbus::State<S>` (state given to the builder with `.state(s)`) or `eventbus::EventBus`"
)]
pub trait FromContext: Sized + Send + 'static {
    /// Makes the argument, or says why not.
    fn from_context(ctx: &HandlerContext) -> Result<Self, String>;

    /// Checks at start-up that the argument can be made; returns the problem, if any.
    #[doc(hidden)]
    fn check(state: &StateMapView<'_>) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// A read-only view of the state map, for start-up checks.
#[doc(hidden)]
#[derive(Debug)]
pub struct StateMapView<'a>(pub(crate) &'a [TypeId]);

/// Shared state, given to the builder with `.state(value)` and taken by handlers as an argument.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use eventbus::{Event, EventBus, State};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, Event)] struct UserCreated { user_id: u64 }
///
/// #[derive(Clone, Default)]
/// struct Counter(Arc<AtomicU64>);
///
/// async fn count(_: UserCreated, State(counter): State<Counter>) {
///     counter.0.fetch_add(1, Ordering::Relaxed);
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = EventBus::builder().state(Counter::default()).handler(count).connect("memory://").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromContext for State<S> {
    fn from_context(ctx: &HandlerContext) -> Result<Self, String> {
        ctx.state
            .values
            .get(&TypeId::of::<S>())
            .and_then(|(v, _)| v.downcast_ref::<S>())
            .map(|s| State(s.clone()))
            .ok_or_else(|| missing_state::<S>())
    }

    fn check(state: &StateMapView<'_>) -> Result<(), String> {
        if state.0.contains(&TypeId::of::<S>()) {
            Ok(())
        } else {
            Err(missing_state::<S>())
        }
    }
}

fn missing_state<S>() -> String {
    format!(
        "no state of type `{}`: give it to the builder with `.state(value)`",
        std::any::type_name::<S>()
    )
}

impl FromContext for EventBus {
    fn from_context(ctx: &HandlerContext) -> Result<Self, String> {
        ctx.bus
            .upgrade()
            .map(EventBus::from_inner)
            .ok_or_else(|| "the bus has been dropped".to_owned())
    }
}

/// A handler with its types erased.
#[doc(hidden)]
pub trait ErasedHandler: Send + Sync + 'static {
    fn call(
        &self,
        delivery: &mut Delivery,
        ctx: &HandlerContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, String>;
    fn check(&self, state: &StateMapView<'_>) -> Result<(), String>;
}

/// An async fn or closure usable as a handler. Implemented for every `Fn` whose first argument
/// is an [`EventArg`], whose other arguments (up to three) are [`FromContext`], and whose
/// future's output is a [`HandlerResult`]. `T` is a marker you never name.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventbus handler",
    label = "not a handler",
    note = "a handler is an async fn or closure: `async fn(E)`, `async fn(Envelope<E>)`, `async fn(Envelope<serde_json::Value>)` or `async fn(Message)`, optionally followed by `State<S>` / `EventBus` arguments, returning `()` or `Result<(), impl Into<Box<dyn Error + Send + Sync>>>`",
    note = "the future must be `Send`, and the event type must implement `eventbus::Event` (use `#[derive(Event)]`)"
)]
pub trait Handler<T>: Send + Sync + 'static {
    #[doc(hidden)]
    fn spec(&self) -> ArgSpec;
    #[doc(hidden)]
    fn into_erased(self) -> Arc<dyn ErasedHandler>;
}

struct FnHandler<F, T> {
    f: F,
    _marker: PhantomData<fn() -> T>,
}

macro_rules! impl_handler {
    ($($A:ident),*) => {
        impl<F, Fut, M, A0, R, $($A,)*> Handler<(M, A0, R, $($A,)*)> for F
        where
            F: Fn(A0, $($A,)*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            A0: EventArg<M>,
            R: HandlerResult,
            M: 'static,
            $($A: FromContext,)*
        {
            fn spec(&self) -> ArgSpec {
                A0::spec()
            }

            fn into_erased(self) -> Arc<dyn ErasedHandler> {
                Arc::new(FnHandler::<F, (M, A0, R, $($A,)*)> { f: self, _marker: PhantomData })
            }
        }

        impl<F, Fut, M, A0, R, $($A,)*> ErasedHandler for FnHandler<F, (M, A0, R, $($A,)*)>
        where
            F: Fn(A0, $($A,)*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            A0: EventArg<M>,
            R: HandlerResult,
            M: 'static,
            $($A: FromContext,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(
                &self,
                delivery: &mut Delivery,
                ctx: &HandlerContext,
            ) -> Result<BoxFuture<'static, Result<(), BoxError>>, String> {
                let a0 = A0::extract(delivery).map_err(|e| e.to_string())?;
                $(let $A = $A::from_context(ctx)?;)*
                let fut = (self.f)(a0, $($A,)*);
                Ok(Box::pin(async move { fut.await.into_result() }))
            }

            fn check(&self, state: &StateMapView<'_>) -> Result<(), String> {
                $($A::check(state)?;)*
                let _ = state;
                Ok(())
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
