//! Boxed futures and errors, as the transport contract and the handler machinery use them.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as transports return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error type of boxed causes (handler errors, transport sources).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
