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
//! state given to the builder, [`EventBus`] to publish follow-up events, and [`DeliveryInfo`]
//! for the attempt and, for durable events, the delivery count, the entry id and whether the
//! entry was claimed from another consumer. The handler returns `()` or `Result<(), Err>` for
//! any `Err` that converts into `Box<dyn Error + Send + Sync>` (`anyhow::Error` and thiserror
//! types do).

mod arg;
mod context;
mod delivery;
pub(crate) mod delivery_info;
mod result;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::transport::{BoxError, BoxFuture};

pub use arg::EventArg;
// Named in the hidden methods of the public handler traits, so `pub`, but unreachable from
// outside the crate: users never name them.
#[allow(unreachable_pub)]
pub use arg::{ArgKind, ArgSpec, marker};
pub(crate) use context::StateMap;
pub use context::{FromContext, HandlerContext, State, StateMapView};
#[allow(unreachable_pub)]
pub use delivery::Delivery;
pub(crate) use delivery::Verdict;
pub use delivery_info::DeliveryInfo;
pub use result::HandlerResult;

/// A handler with its types erased.
#[doc(hidden)]
pub trait ErasedHandler: Send + Sync + 'static {
    fn call(
        &self,
        delivery: &mut Delivery,
        ctx: &HandlerContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, String>;
    fn check(&self, state: &StateMapView<'_>) -> Result<(), String>;
    /// How many of the handler's arguments are a transaction the bus opens for each run.
    fn transactions(&self) -> usize;
}

/// An async fn or closure usable as a handler. Implemented for every `Fn` whose first argument
/// is an [`EventArg`], whose other arguments (up to three) are [`FromContext`], and whose
/// future's output is a [`HandlerResult`]. `T` is a marker you never name.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventbus handler",
    label = "not a handler",
    note = "a handler is an async fn or closure taking what it receives first (`E`, `Envelope<E>`, `Envelope<serde_json::Value>` or `Message`), then up to three of `State<S>`, `EventBus`, `DeliveryInfo` and `Tx`, and returning `()` or `Result<(), E>`",
    note = "for an error that points at the wrong argument or return type, put `#[eventbus::handler]` on the fn"
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

            fn transactions(&self) -> usize {
                0 $(+ usize::from($A::TRANSACTION))*
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
