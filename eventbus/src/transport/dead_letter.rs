//! Dead letters: events a handler gave up on, and the optional store that keeps them.

use bytes::Bytes;

use super::{BoxFuture, TransportError};

/// A dead letter: an event that a handler failed on after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The id of the dead-letter entry in its store (a Redis stream entry id, or a counter).
    pub entry_id: String,
    /// The event type.
    pub event_type: String,
    /// The channel the event arrived on.
    pub channel: String,
    /// The handler that failed.
    pub handler: String,
    /// The last error.
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The original message, as received.
    pub payload: Bytes,
    /// Whether it came from a durable stream: a replay appends it to the stream again
    /// instead of publishing it.
    pub durable: bool,
}

/// Where a transport keeps dead letters: an optional part of a [`Transport`](super::Transport).
///
/// The Redis transport keeps them in one stream per event type (`eventbus:dead:<type>`); the
/// in-process transport in memory, bounded like the stream.
pub trait DeadLetterStore: Send + Sync {
    /// Appends a dead letter to the store for its event type; returns its entry id.
    fn store<'a>(&'a self, letter: &'a DeadLetter)
    -> BoxFuture<'a, Result<String, TransportError>>;

    /// Reads up to `limit` dead letters of an event type, oldest first.
    fn list<'a>(
        &'a self,
        event_type: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>>;

    /// Removes a dead letter (after a successful replay).
    fn remove<'a>(
        &'a self,
        event_type: &'a str,
        entry_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>>;
}
