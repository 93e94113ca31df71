//! Transports: how envelopes travel between buses, and the one place a delivery mechanism
//! plugs in.
//!
//! # Adding a transport
//!
//! A transport implements [`Transport`] and is created with the [`Inbound`] sink the bus
//! gives it, where it hands every message it receives. Hand it to the bus with
//! [`EventBusBuilder::connect_with`](crate::EventBusBuilder::connect_with):
//!
//! ```
//! # use std::sync::Arc;
//! # use eventbus::transport::{Inbound, Transport, TransportError};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = eventbus::EventBus::builder()
//!     .connect_with(|inbound: Arc<dyn Inbound>| async move {
//!         let transport = eventbus::transport::memory::connect("memory://", inbound)?;
//!         Ok::<Arc<dyn Transport>, TransportError>(transport)
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The contract, in short:
//!
//! - [`Transport::publish`] carries bytes to a channel; [`Transport::subscribe`] and
//!   [`Transport::unsubscribe`] follow the topics the bus's handlers hold (the bus asks once
//!   per topic, when its first handler arrives and after its last one left).
//! - Which kind of publish: the bus calls [`Transport::publish_sharded`] for typed events with
//!   a fixed channel, and [`Transport::publish`] for keyed events (their handlers listen on a
//!   pattern), raw payloads ([`EventBus::publish_raw`](crate::EventBus::publish_raw)) and
//!   everything else. Only a transport with [`Capabilities::sharded`] tells them apart (a Redis
//!   Cluster: `SPUBLISH`, heard by channel subscribers on the channel's shard only, against
//!   `PUBLISH`, broadcast to every node and heard by patterns too); it subscribes each channel
//!   both ways, so a channel handler hears either kind. The others publish both alike.
//! - Incoming messages go to [`Inbound::message`], which never waits on a handler: a Redis
//!   subscriber that stops reading is disconnected by the server once its buffer fills.
//! - [`Capabilities`] say what applies: patterns, acknowledgements, sharded channels, replay,
//!   reconnects. The conformance suite (`eventbus::conformance`, feature `conformance`) runs
//!   the same behaviours on every transport, a transport of your own included, with the
//!   capabilities deciding which.
//! - An at-least-once transport attaches an [`Ack`] to each message; the bus acknowledges
//!   after the handler succeeded (or the event was dead-lettered), and the transport reads
//!   only while [`Inbound::credit`] is above zero, waiting on [`Inbound::credit_available`]
//!   otherwise, so a slow handler slows its own reading instead of the bus dropping.
//! - Optional parts: a [`DeadLetterStore`], a [`DedupeStore`], a [`Scheduler`],
//!   [`PubSubAdmin`] queries and [`Transport::stream_groups`].
//!
//! The bus ships the in-process transport ([`memory`], `memory://`) and, with the `redis`
//! feature, Redis pub/sub ([`crate::redis`], `redis://`, `rediss://`, `redis+unix://`,
//! `redis+sentinel://`, and `redis+cluster://` with sharded channels).

use std::time::Duration;

use bytes::Bytes;

use crate::Topic;

mod ack;
mod admin;
mod capabilities;
pub(crate) mod connection;
pub(crate) mod dead_letter;
mod dedupe;
mod error;
mod glob;
mod group;
pub mod memory;
mod memory_dedupe;
mod memory_reader;
mod memory_schedule;
mod memory_streams;
pub(crate) mod message;
pub mod schedule;
pub(crate) mod url;

pub use ack::{Ack, Acknowledge, Deferred};
pub use admin::PubSubAdmin;
pub use capabilities::Capabilities;
// Exported at the crate root: handler authors name them too.
pub(crate) use connection::ConnectionEvent;
pub(crate) use dead_letter::DeadLetter;
pub use dead_letter::DeadLetterStore;
pub use dedupe::DedupeStore;
pub(crate) use error::Detail;
pub use error::{ErrorKind, TransportError};
pub use group::{GroupSpec, GroupStatus};
pub(crate) use message::Message;
pub use schedule::{MoverStats, QueueStatus, Route, Scheduled, Scheduler, When};
pub use url::redact_url;

pub use crate::boxed::{BoxError, BoxFuture};

fn unsupported(what: &str) -> TransportError {
    TransportError::new(
        ErrorKind::Unsupported,
        format!("this transport offers no {what}"),
    )
}

/// Where a transport hands what it receives. The bus implements it.
///
/// Implementations return quickly and never wait on a handler.
pub trait Inbound: Send + Sync + 'static {
    /// A message arrived on a subscribed channel or pattern.
    fn message(&self, message: Message);

    /// The connection changed state.
    fn connection(&self, event: ConnectionEvent);

    /// How many more messages the handler reading for `group` can take now: an at-least-once
    /// transport reads at most this many before asking again. `0` for an unknown group, and
    /// while the handler's queue has less than half its room free (so reads come in batches).
    fn credit(&self, group: &str) -> usize;

    /// Completes when [`credit`](Self::credit) for `group` may have grown (a queued message
    /// was taken) or the group is gone. A transport waits on it instead of reading.
    fn credit_available(&self, group: &str) -> BoxFuture<'static, ()>;

    /// An entry pending on `group` was trimmed from its stream before it was handled: it can
    /// never be delivered. The transport has removed it from the group's pending entries.
    fn trimmed(&self, group: &str, entry_id: &str);
}

/// The transport contract: see the [module documentation](self) for how the parts fit.
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// What this transport supports.
    fn capabilities(&self) -> Capabilities;

    /// Publishes `payload` on `channel`; returns how many subscribers received it (for an
    /// at-least-once transport, 1 once the entry is stored).
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>>;

    /// Publishes `payload` on the sharded channel `channel`, where the transport has sharded
    /// channels ([`Capabilities::sharded`]): the message reaches the channel's subscribers and
    /// no pattern. The bus publishes typed events with a fixed channel this way. The default
    /// is [`publish`](Self::publish).
    fn publish_sharded<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        self.publish(channel, payload)
    }

    /// Subscribes to topics. Messages go to the [`Inbound`] the transport was created with.
    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Unsubscribes from topics.
    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Resolves once every subscribed topic is confirmed by the server, or fails when the
    /// subscriber is not connected within `within`.
    fn ready(&self, within: Duration) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Checks the server answers; returns the round-trip time.
    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>>;

    /// Stops intake: unsubscribes everything and closes the connections. Idempotent.
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Appends `payload` durably to `stream`; returns the entry id. For transports with
    /// [`Capabilities::acks`].
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        let _ = (stream, payload);
        Box::pin(async { Err(unsupported("durable delivery")) })
    }

    /// Starts reading for a consumer group (creating it when missing): first this consumer's
    /// own pending entries, then entries idle on other consumers, then new ones, each as a
    /// [`Message`] with an [`Ack`], no more at a time than [`Inbound::credit`] allows.
    fn join<'a>(&'a self, group: &'a GroupSpec) -> BoxFuture<'a, Result<(), TransportError>> {
        let _ = group;
        Box::pin(async { Err(unsupported("durable delivery")) })
    }

    /// Publishes many messages, each on its channel, in order; returns each one's receivers.
    /// The default publishes them one by one; a transport that can send them together (a
    /// Redis pipeline) overrides it. On an error some of them may have been sent.
    fn publish_many<'a>(
        &'a self,
        messages: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<u64>, TransportError>> {
        Box::pin(one_by_one(messages, |channel, payload| {
            self.publish(channel, payload)
        }))
    }

    /// Publishes many messages on sharded channels, as
    /// [`publish_sharded`](Self::publish_sharded) publishes one, in order; returns each one's
    /// receivers. The default publishes them one by one.
    fn publish_many_sharded<'a>(
        &'a self,
        messages: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<u64>, TransportError>> {
        Box::pin(one_by_one(messages, |channel, payload| {
            self.publish_sharded(channel, payload)
        }))
    }

    /// Appends many entries, each to its stream, in order; returns their entry ids. The
    /// default appends them one by one. On an error some of them may have been appended.
    fn append_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(one_by_one(entries, |stream, payload| {
            self.append(stream, payload)
        }))
    }

    /// Stops reading for a group; what it read and did not acknowledge stays pending.
    fn leave<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        let _ = group;
        Box::pin(async { Ok(()) })
    }

    /// The dead-letter store, if this transport keeps one.
    fn dead_letter_store(&self) -> Option<&dyn DeadLetterStore> {
        None
    }

    /// Pub/sub introspection, if this transport offers it.
    fn pubsub_admin(&self) -> Option<&dyn PubSubAdmin> {
        None
    }

    /// Where handled event ids are remembered for de-duplication, if this transport keeps
    /// them.
    fn dedupe_store(&self) -> Option<&dyn DedupeStore> {
        None
    }

    /// Where scheduled messages wait for their time, if this transport keeps them.
    fn scheduler(&self) -> Option<&dyn Scheduler> {
        None
    }

    /// The consumer groups of a stream with their state: consumers, pending entries, lag.
    /// Empty when the stream does not exist.
    fn stream_groups<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GroupStatus>, TransportError>> {
        let _ = stream;
        Box::pin(async { Err(unsupported("consumer group queries")) })
    }
}

/// The defaults of the `*_many` calls: `each` on every (channel or stream, payload) in order,
/// stopping at the first error.
async fn one_by_one<'a, T, F>(
    items: &'a [(String, Bytes)],
    each: impl Fn(&'a str, Bytes) -> F,
) -> Result<Vec<T>, TransportError>
where
    F: Future<Output = Result<T, TransportError>>,
{
    let mut results = Vec::with_capacity(items.len());
    for (name, payload) in items {
        results.push(each(name, payload.clone()).await?);
    }
    Ok(results)
}
