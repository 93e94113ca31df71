//! Scheduled delivery: messages that wait for their time, and the optional part of a transport
//! that keeps them ([`Scheduler`]).
//!
//! A scheduled message waits in a *queue* (its channel, or for a keyed type the channel
//! pattern) under an id (the envelope's id). When it is due, a *mover* takes it out and sends
//! it the way it was scheduled: published, published on its shard, or appended to its stream.
//! Taking it out and sending it is one step, so a message is sent once however many movers
//! run. Every bus connected to the store may run a mover.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{BoxFuture, TransportError};
pub use crate::metrics::{MoverStats, QueueStatus};

/// How a scheduled message goes out when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Published on its channel (`PUBLISH`): heard by channel and pattern subscribers.
    Publish,
    /// Published on its sharded channel (`SPUBLISH` on a Redis Cluster, `PUBLISH` elsewhere).
    PublishSharded,
    /// Appended to the stream its channel names (durable delivery).
    Append,
}

/// When a scheduled message is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long after the store took it, by the store's clock (on Redis, the server's
    /// `TIME`), so the clocks of the services do not matter.
    After(Duration),
    /// At this time. A time in the past is due at once.
    At(SystemTime),
}

/// A scheduled message: one to schedule, or one waiting in its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scheduled {
    /// The queue it waits in: its channel, or for a keyed type the channel pattern.
    pub queue: String,
    /// Its id in the queue (the envelope id). Scheduling an id that is waiting replaces it.
    pub id: String,
    /// The channel (or stream) it goes to.
    pub channel: String,
    /// How it goes out.
    pub route: Route,
    /// The payload, as it will be sent.
    pub payload: Bytes,
    /// When it is due, for a waiting message; ignored when scheduling.
    pub due: Option<SystemTime>,
    /// For an entry of a retry stream: the delayed retries that bring it back and the attempts
    /// made before.
    pub(crate) retried: (u32, u32),
}

impl Scheduled {
    /// A message for `channel`, waiting in `queue` under `id`.
    pub fn new(
        queue: impl Into<String>,
        id: impl Into<String>,
        channel: impl Into<String>,
        route: Route,
        payload: Bytes,
    ) -> Self {
        Scheduled {
            queue: queue.into(),
            id: id.into(),
            channel: channel.into(),
            route,
            payload,
            due: None,
            retried: (0, 0),
        }
    }
}

/// Where a transport keeps scheduled messages: an optional part of a
/// [`Transport`](super::Transport) ([`Transport::scheduler`](super::Transport::scheduler)).
pub trait Scheduler: Send + Sync {
    /// Stores `message` until `when`; returns its due time (by the store's clock).
    fn schedule<'a>(
        &'a self,
        message: &'a Scheduled,
        when: When,
    ) -> BoxFuture<'a, Result<SystemTime, TransportError>>;

    /// Removes the message `id` from `queue` before it is sent: `true` when it was waiting,
    /// `false` when it was sent already, cancelled already, or never scheduled.
    fn cancel<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>>;

    /// Up to `limit` messages waiting in `queue`, the first due first.
    fn list<'a>(
        &'a self,
        queue: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Scheduled>, TransportError>>;

    /// Every queue that has held scheduled messages, with how many wait in it now.
    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueStatus>, TransportError>>;

    /// What this transport's mover did.
    fn mover(&self) -> MoverStats;
}

/// The longest a message may be scheduled ahead: ten years.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
