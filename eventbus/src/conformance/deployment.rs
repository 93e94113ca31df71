//! Where the suite runs.

use std::future::Future;

use crate::bus::{EventBus, EventBusBuilder};
use crate::error::ConnectError;
use crate::transport::{BoxError, BoxFuture};

/// Where the suite runs: connects buses to one shared world (a server, a cluster, a hub), so
/// that what one bus publishes reaches the others.
///
/// A closure from [`EventBusBuilder`] to the future of its `connect` is a deployment without
/// a restart:
///
/// ```
/// # async fn run() {
/// eventbus::conformance::run(|b: eventbus::EventBusBuilder| b.connect("memory://shared"))
///     .await
///     .assert_passed();
/// # }
/// ```
///
/// Implement the trait on a type of your own for [`restart`](Self::restart):
///
/// ```
/// use eventbus::conformance::Deployment;
/// use eventbus::transport::{BoxError, BoxFuture};
/// use eventbus::{ConnectError, EventBus, EventBusBuilder};
///
/// struct MyServer {
///     url: String,
/// }
///
/// impl Deployment for MyServer {
///     fn connect(&self, builder: EventBusBuilder) -> BoxFuture<'_, Result<EventBus, ConnectError>> {
///         Box::pin(builder.connect(&self.url))
///     }
///
///     fn restart<'a>(
///         &'a mut self,
///         channel: &'a str,
///     ) -> Option<BoxFuture<'a, Result<(), BoxError>>> {
///         let _ = channel; // the server that serves it, where there are several
///         Some(Box::pin(async move {
///             // stop the server, start it again on the same address
///             Ok(())
///         }))
///     }
/// }
/// ```
pub trait Deployment: Send + Sync {
    /// Connects a bus built by `builder` (its handlers and hooks set by the suite) to the
    /// deployment's shared world.
    fn connect(&self, builder: EventBusBuilder) -> BoxFuture<'_, Result<EventBus, ConnectError>>;

    /// Takes the server that serves `channel` away and brings service back (a restart of a
    /// single server, a failover to a replica), completing once a client could connect again.
    /// Buses connected before it must find their way back on their own.
    ///
    /// `None` (the default): this deployment cannot, and the reconnect behaviour is skipped.
    fn restart<'a>(&'a mut self, channel: &'a str) -> Option<BoxFuture<'a, Result<(), BoxError>>> {
        let _ = channel;
        None
    }
}

impl<F, Fut> Deployment for F
where
    F: Fn(EventBusBuilder) -> Fut + Send + Sync,
    Fut: Future<Output = Result<EventBus, ConnectError>> + Send + 'static,
{
    fn connect(&self, builder: EventBusBuilder) -> BoxFuture<'_, Result<EventBus, ConnectError>> {
        Box::pin(self(builder))
    }
}
