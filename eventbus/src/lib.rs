#![doc = include_str!("docs/crate.md")]
#![doc = include_str!("docs/delivery.md")]
#![cfg_attr(feature = "postgres", doc = include_str!("docs/consistency.md"))]
#![doc = include_str!("docs/time.md")]
#![doc = include_str!("docs/observe.md")]
#![doc = include_str!("docs/tracing.md")]
#![doc = include_str!("docs/features.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod asyncapi;
mod boxed;
mod bus;
mod clone_probe;
#[cfg(feature = "conformance")]
pub mod conformance;
mod debug_handler;
mod envelope;
mod error;
mod event;
mod handler;
mod metrics;
mod observe;
mod options;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
mod runtime;
#[cfg(feature = "schema")]
pub mod schema;
mod sync;
pub mod testing;
mod topic;
pub mod transport;

#[cfg(feature = "postgres")]
pub use bus::OutboxPublisher;
pub use bus::{
    ConnectionHealth, ConnectionState, DEFAULT_MAX_MESSAGE_SIZE, EventBus, EventBusBuilder,
    EventStream, Health, PublishOptions, PublishReceipt, RawReceipt, ScheduleId, ScheduleReceipt,
    Subscription, shutdown_signal,
};
pub use envelope::{DecodeError, EncodeError, Envelope, ExtensionError, RawEnvelope};
pub use error::{
    ConnectError, ConnectErrorKind, DecodeFailure, Failure, FailureCause, HandlerFailure,
    OrphanedGroup, OverflowFailure, PublishError, PublishErrorKind, QueryError, QueryErrorKind,
    ShutdownError, ShutdownReport, SubscribeError, SubscribeErrorKind,
};
pub use event::{ChannelError, Event};
pub use handler::{
    DeliveryInfo, EventArg, FromContext, Handler, HandlerContext, HandlerResult, State,
    StateMapView,
};
#[cfg(feature = "metrics")]
pub use metrics::export::{MetricsExport, MetricsExporter, export_metrics, export_metrics_with};
pub use metrics::{
    EventTypeMetrics, GroupMetrics, HandlerMetrics, LatencyBuckets, LatencySnapshot, Metrics,
    MoverStats, QueueStatus,
};
pub use observe::EventContext;
pub use options::{DurableOptions, HandlerOptions, Overflow, RetryPolicy, StartFrom};
#[cfg(feature = "postgres")]
pub use postgres::{Inbox, Outbox, OutboxReceipt, Tx};
pub use topic::Topic;
pub use transport::connection::ConnectionEvent;
pub use transport::dead_letter::DeadLetter;
pub use transport::message::Message;

/// `#[derive(Event)]`: implements [`Event`] for a struct or enum. See [`Event`] for the attributes.
#[cfg(feature = "derive")]
pub use eventbus_derive::Event;

/// `#[eventbus::handler]`: checks one async fn as a handler.
///
/// ```
/// use eventbus::{Event, EventBus, State};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, Event)]
/// struct UserCreated { user_id: u64 }
///
/// #[derive(Clone)]
/// struct Mailer;
///
/// #[eventbus::handler]
/// async fn send_welcome(
///     event: UserCreated,
///     State(mailer): State<Mailer>,
///     bus: EventBus,
/// ) -> Result<(), std::io::Error> {
///     let _ = (event.user_id, mailer, bus);
///     Ok(())
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = EventBus::builder()
///     .state(Mailer)
///     .handler(send_welcome)
///     .connect("memory://")
///     .await?;
/// # bus.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "derive")]
pub use eventbus_derive::handler;

/// The date-time crate of [`Envelope::time`], re-exported so its types can be named.
pub use chrono;

#[doc(hidden)]
pub mod __private {
    pub use crate::clone_probe::{CloneProbe, NoCloneProbe, Probe};
    pub use crate::event::{fill_channel, key, unchecked_channel};
    pub use crate::metrics::type_index::next_type_index;
    #[cfg(feature = "schema")]
    pub use crate::schema::json_schema;
    pub use serde_json::Value;
    pub mod debug_handler {
        pub use crate::debug_handler::*;
    }
    pub use std::borrow::Cow;
    pub use std::format;
    pub use std::option::Option;
    pub use std::result::Result;
    pub use std::sync::OnceLock;
}
