//! The checks behind `#[eventbus::handler]`: one helper trait per mistake, each with its own
//! message, so that a handler that does not compile is told which argument is wrong and why.
//!
//! Each helper trait is implemented for exactly the types the bus accepts (through the trait
//! that [`Handler`](crate::Handler) itself requires), so the checks accept what registration
//! accepts; only the messages differ.

use std::future::Future;

use crate::handler::{EventArg, FromContext, HandlerResult, State};

/// A type a handler can take first: what it receives.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the first argument of a handler",
    label = "not something a handler can receive",
    note = "the first argument is what the handler receives: an event `E` (a type with `#[derive(Event)]`), `Envelope<E>`, `Envelope<serde_json::Value>` or `eventbus::Message`",
    note = "if `{Self}` is your event type, add `#[derive(eventbus::Event, serde::Serialize, serde::Deserialize)]` to it"
)]
pub trait FirstArgument<M> {}

impl<M, T: EventArg<M>> FirstArgument<M> for T {}

/// A type a handler can take after its first argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an extra argument of a handler",
    label = "not an extra handler argument",
    note = "after what it receives, a handler may take up to three of `State<S>` (a value given to the builder with `.state(value)`), `EventBus` (to publish follow-up events), `DeliveryInfo` (the attempt and delivery count) and `Tx` (a database transaction, feature `postgres`)",
    note = "the event itself must come first"
)]
pub trait ExtraArgument {}

impl<T: FromContext> ExtraArgument for T {}

/// State a `State<S>` argument can hold: cloned for each run.
#[diagnostic::on_unimplemented(
    message = "the state `{Self}` of a `State<{Self}>` argument must be `Clone + Send + Sync + 'static`",
    label = "`{Self}` cannot be handler state",
    note = "each run of the handler gets its own clone of the state: derive `Clone` on it, or share it as `State<Arc<{Self}>>` (with a `Mutex` inside for what changes)"
)]
pub trait StateValue {}

impl<S: Clone + Send + Sync + 'static> StateValue for S {}

/// `eventbus::State<S>`, as opposed to another type named `State`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `eventbus::State`",
    label = "not `eventbus::State<S>`",
    note = "handler state is taken as `eventbus::State<S>`"
)]
pub trait IsState<S> {}

impl<S> IsState<S> for State<S> {}

/// What a handler may return.
#[diagnostic::on_unimplemented(
    message = "a handler must return `()` or `Result<(), E>`, not `{Self}`",
    label = "not a handler's return type",
    note = "the bus has nowhere to send a returned value: return `Ok(())` on success",
    note = "the error type `E` must convert into `Box<dyn std::error::Error + Send + Sync>` (`anyhow::Error`, `String` and thiserror types do)"
)]
pub trait ReturnType {}

impl<R: HandlerResult> ReturnType for R {}

/// Checks the first argument's type.
pub fn first_argument<T: FirstArgument<M>, M>() {}

/// Checks an extra argument's type.
pub fn extra_argument<T: ExtraArgument>() {}

/// Checks a `State<S>` argument's type `T` and its state `S`.
pub fn state_argument<T: IsState<S>, S: StateValue>() {}

/// Checks the return type.
pub fn return_type<R: ReturnType>() {}

/// Checks that the handler's future can move between threads. The compiler's own message for
/// a future that is not `Send` names the value held across an `.await`, so no trait of ours
/// stands in between.
pub fn future_is_send<F: Future + Send>(future: F) {
    drop(future);
}

/// A value of any type, for calling the handler in a check that is compiled and never run.
pub fn value<T>() -> T {
    unreachable!("handler checks are never run")
}
