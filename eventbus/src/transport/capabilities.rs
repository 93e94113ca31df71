//! What a transport can do, so the bus and the conformance suite know what applies.

/// What a transport supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Pattern subscriptions (`events:user.*`).
    pub patterns: bool,
    /// At-least-once delivery: messages carry an [`Ack`](super::Ack) and stay pending until
    /// acknowledged; the transport reads only as much as the handler has credit for.
    pub acks: bool,
    /// Sharded channels (`SPUBLISH`/`SSUBSCRIBE` on a Redis Cluster).
    pub sharded: bool,
    /// Replay of history: a new consumer can start from the beginning of a log.
    pub replay: bool,
    /// Connections that can be lost and re-established (a network transport): connection
    /// events report the gaps.
    pub reconnects: bool,
    /// Scheduled delivery: the transport keeps messages until they are due
    /// ([`Transport::scheduler`](super::Transport::scheduler)).
    pub schedule: bool,
}

impl Capabilities {
    /// Pub/sub with patterns, as Redis pub/sub and the in-process transport offer it.
    pub const fn pubsub() -> Self {
        Capabilities {
            patterns: true,
            acks: false,
            sharded: false,
            replay: false,
            reconnects: false,
            schedule: false,
        }
    }

    /// The same, with reconnects.
    pub const fn with_reconnects(mut self) -> Self {
        self.reconnects = true;
        self
    }
}
