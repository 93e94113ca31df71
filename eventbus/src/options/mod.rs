//! The options of a handler, all in one place: [`HandlerOptions`] with its [`RetryPolicy`]
//! and [`Overflow`] policy, the [`DurableOptions`] of a handler of a durable event type with
//! its [`StartFrom`], and the bounds every option is clamped to.

mod durable;
mod handler;
mod limits;
mod overflow;
mod retry;

pub use durable::{DurableOptions, StartFrom};
pub use handler::HandlerOptions;
pub(crate) use limits::MAX_DURATION;
pub use overflow::Overflow;
pub use retry::RetryPolicy;
