//! Acknowledgements: how an at-least-once transport learns what became of a message.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{BoxFuture, ErrorKind, TransportError};

/// A durable entry handed off to come back later to its group only (a delayed retry).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deferred {
    /// The entry's payload, as it will come back.
    pub payload: Bytes,
    /// How long until it comes back.
    pub delay: Duration,
    /// How many delayed retries it will have had when it comes back (1 for the first).
    pub delayed: u32,
    /// How many attempts were made on it so far, over every delivery.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
}

impl Deferred {
    /// `payload` back after `delay`, as delayed retry number `delayed`, after `attempts`
    /// attempts that ended with `error`.
    pub fn new(
        payload: Bytes,
        delay: Duration,
        delayed: u32,
        attempts: u32,
        error: String,
    ) -> Self {
        Deferred {
            payload,
            delay,
            delayed,
            attempts,
            error,
        }
    }
}

/// The transport's side of acknowledgements, one per consumer group: implemented by
/// at-least-once transports.
pub trait Acknowledge: Send + Sync + 'static {
    /// The handler is done with the entry (it succeeded, or its failure was dead-lettered):
    /// remove it from the group's pending entries.
    fn ack<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), TransportError>>;

    /// The bus lets go of the entry without acknowledging it (its dead letter could not be
    /// stored, or its handler went away while it was being routed): it stays pending, and the
    /// transport may deliver it again, to this consumer too, as an entry left by a consumer
    /// that died (after `claim_idle`). Nothing by default.
    fn release(&self, entry_id: &str) {
        let _ = entry_id;
    }

    /// Hands the entry off to come back to this group only, after `later.delay`, and removes
    /// it from the group's pending entries, in one step: a crash leaves it either pending or
    /// handed off, never lost and never both. Unsupported by default.
    fn defer<'a>(
        &'a self,
        entry_id: &'a str,
        later: &'a Deferred,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        let _ = (entry_id, later);
        Box::pin(async {
            Err(TransportError::new(
                ErrorKind::Unsupported,
                "this transport offers no delayed retries",
            ))
        })
    }
}

/// The acknowledgement handle of a message from an at-least-once transport.
///
/// The bus acknowledges after the handler returned `Ok`, or after the event was stored as a
/// dead letter; a message whose handler never finished (a crash, a shutdown deadline) stays
/// pending and is delivered again.
#[derive(Clone)]
pub struct Ack {
    /// The consumer group the message was read for: the bus hands it to the handler that
    /// owns this group only.
    pub group: Arc<str>,
    /// The entry's id in its log (a Redis stream entry id).
    pub entry_id: Arc<str>,
    /// How many times the entry has been delivered, this time included.
    pub deliveries: u32,
    /// Whether this consumer claimed the entry from another one, on which it had stayed
    /// unacknowledged too long (that consumer is presumed dead).
    pub claimed: bool,
    /// How many delayed retries brought this entry back (0: it came from its stream).
    pub delayed: u32,
    /// How many attempts were made on the entry before it was handed off for later.
    pub prior_attempts: u32,
    handle: Arc<dyn Acknowledge>,
}

impl Ack {
    /// A handle for the entry `entry_id` of `group`.
    pub fn new(
        group: Arc<str>,
        entry_id: Arc<str>,
        deliveries: u32,
        handle: Arc<dyn Acknowledge>,
    ) -> Self {
        Ack {
            group,
            entry_id,
            deliveries,
            claimed: false,
            delayed: 0,
            prior_attempts: 0,
            handle,
        }
    }

    /// Marks the entry as brought back by delayed retry number `delayed`, after
    /// `prior_attempts` attempts.
    pub fn with_delayed(mut self, delayed: u32, prior_attempts: u32) -> Self {
        self.delayed = delayed;
        self.prior_attempts = prior_attempts;
        self
    }

    /// Marks the entry as claimed from another consumer.
    pub fn mark_claimed(mut self) -> Self {
        self.claimed = true;
        self
    }

    /// Acknowledges the entry.
    pub async fn ack(&self) -> Result<(), TransportError> {
        self.handle.ack(&self.entry_id).await
    }

    /// Lets go of the entry without acknowledging it: it stays pending, to be delivered again
    /// (see [`Acknowledge::release`]).
    pub fn release(&self) {
        self.handle.release(&self.entry_id);
    }

    /// Hands the entry off to come back later to its group only (see [`Acknowledge::defer`]).
    pub async fn defer(&self, later: &Deferred) -> Result<(), TransportError> {
        self.handle.defer(&self.entry_id, later).await
    }
}

impl PartialEq for Ack {
    fn eq(&self, other: &Self) -> bool {
        self.group == other.group && self.entry_id == other.entry_id
    }
}

impl Eq for Ack {}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("group", &self.group)
            .field("entry_id", &self.entry_id)
            .field("deliveries", &self.deliveries)
            .field("claimed", &self.claimed)
            .field("delayed", &self.delayed)
            .finish_non_exhaustive()
    }
}
