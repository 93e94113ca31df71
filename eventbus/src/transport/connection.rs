//! Connection state changes, as transports report them.

use std::fmt;

/// A change in a transport's connection, as the bus reports it.
///
/// Pub/sub delivers at most once: messages published while a subscriber is disconnected are
/// lost, so [`ConnectionEvent::Resubscribed`] marks a possible gap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection was established.
    Connected {
        /// Which connection: `"publisher"` or `"subscriber"`.
        role: &'static str,
    },
    /// A connection was lost.
    Disconnected {
        /// Which connection: `"publisher"` or `"subscriber"`.
        role: &'static str,
        /// Why it was lost.
        cause: String,
    },
    /// A lost connection was established again.
    Reconnected {
        /// Which connection: `"publisher"` or `"subscriber"`.
        role: &'static str,
        /// How many attempts it took.
        attempts: u32,
    },
    /// The subscriber subscribed again to everything the bus holds after a reconnect:
    /// messages published in between were not received.
    Resubscribed {
        /// How many channels and patterns were subscribed again.
        topics: usize,
    },
    /// On a Redis Cluster, a channel is now served by another node (its slot migrated, or the
    /// node failed over to its replica); reported before the `Resubscribed` that closes the gap.
    Moved {
        /// The channel.
        channel: String,
        /// Its hash slot.
        slot: u16,
        /// The node that served it before, `host:port`.
        from: String,
        /// The node that serves it now, `host:port`.
        to: String,
    },
    /// A durable handler's consumer group was missing on the server (it restarted without
    /// its data, or the stream or group was deleted) and was created again at `at`: the last
    /// entry the group was known to have delivered when the stream still holds it, or `0` (the
    /// stream's start). Entries pending before, and entries the server lost, are not
    /// delivered; nothing appended after the group went missing is skipped.
    GroupRecreated {
        /// The stream key.
        stream: String,
        /// The consumer group.
        group: String,
        /// The entry id the group was created at.
        at: String,
    },
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionEvent::Connected { role } => write!(f, "{role} connected"),
            ConnectionEvent::Disconnected { role, cause } => {
                write!(f, "{role} disconnected: {cause}")
            }
            ConnectionEvent::Reconnected { role, attempts } => {
                write!(f, "{role} reconnected after {attempts} attempt(s)")
            }
            ConnectionEvent::Resubscribed { topics } => write!(
                f,
                "resubscribed to {topics} topic(s); messages published while disconnected were missed"
            ),
            ConnectionEvent::Moved {
                channel,
                slot,
                from,
                to,
            } => write!(
                f,
                "channel {channel} (slot {slot}) moved from cluster node {from} to {to}"
            ),
            ConnectionEvent::GroupRecreated { stream, group, at } => write!(
                f,
                "consumer group {group} of stream {stream} was missing on the server and was \
                 created again at {at}; entries the server lost were not delivered"
            ),
        }
    }
}
