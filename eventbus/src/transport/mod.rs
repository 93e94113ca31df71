//! Transports: how envelopes travel between buses.
//!
//! A [`Transport`] publishes bytes on channels and delivers what arrives on the topics it
//! subscribed to an [`Inbound`] sink. The bus ships an in-process transport (`memory://`) and,
//! with the `redis` feature, the Redis pub/sub transport (`redis://`, `rediss://`,
//! `redis+unix://`). Pub/sub transports deliver at most once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::Topic;
pub use crate::error::ErrorKind;

pub(crate) mod glob;
pub(crate) mod memory;

pub use glob::glob_match;

/// A boxed future, as transports return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error type of boxed causes (handler errors, transport sources).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One message as it arrived on a subscribed topic.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published on.
    pub channel: Arc<str>,
    /// The pattern that matched, when it arrived through a pattern subscription.
    pub pattern: Option<Arc<str>>,
    /// The payload, as published.
    pub payload: Bytes,
}

impl Message {
    /// The payload as UTF-8 text, or `None` when it is not valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The topic this message was delivered through.
    pub fn topic(&self) -> Topic {
        match &self.pattern {
            Some(p) => Topic::Pattern(p.to_string()),
            None => Topic::Channel(self.channel.to_string()),
        }
    }

    /// The first bytes of the payload, for error reports (lossy UTF-8, at most 64 bytes).
    pub fn excerpt(&self) -> String {
        excerpt(&self.payload)
    }
}

pub(crate) fn excerpt(payload: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &payload[..payload.len().min(MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if payload.len() > MAX {
        s.push('…');
    }
    s
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel)
            .field("pattern", &self.pattern)
            .field("payload", &excerpt(&self.payload))
            .field("len", &self.payload.len())
            .finish()
    }
}

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
        }
    }
}

/// Where a transport hands what it receives. The bus implements it.
///
/// Implementations must return quickly and never wait on a handler: a Redis subscriber that
/// stops reading is disconnected by the server once its output buffer fills.
pub trait Inbound: Send + Sync + 'static {
    /// A message arrived on a subscribed channel or pattern.
    fn message(&self, message: Message);
    /// The connection changed state.
    fn connection(&self, event: ConnectionEvent);
}

/// An error from a transport: a kind, a message that never contains a password, and the cause.
#[derive(Debug)]
pub struct TransportError {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl TransportError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_parts(self) -> (ErrorKind, String, Option<BoxError>) {
        (self.kind, self.message, self.source)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

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
}

/// The transport contract. Implemented by the in-process and the Redis transports.
///
/// Subscriptions are reference-free: the bus subscribes a topic once, when its first handler
/// arrives, and unsubscribes it when its last handler leaves.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Publishes `payload` on `channel`; returns how many subscribers received it.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>>;

    /// Subscribes to topics. Messages go to the [`Inbound`] the transport was created with.
    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Unsubscribes from topics.
    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Checks the server answers; returns the round-trip time.
    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>>;

    /// Active channels (`PUBSUB CHANNELS [pattern]`).
    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>>;

    /// Subscriber counts per channel (`PUBSUB NUMSUB`), pattern subscribers not included.
    fn numsub<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, TransportError>>;

    /// The number of pattern subscriptions of all clients (`PUBSUB NUMPAT`).
    fn numpat(&self) -> BoxFuture<'_, Result<u64, TransportError>>;

    /// Appends a dead letter to the store for its event type.
    fn store_dead_letter<'a>(
        &'a self,
        letter: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<String, TransportError>>;

    /// Reads up to `limit` dead letters of an event type, oldest first.
    fn dead_letters<'a>(
        &'a self,
        event_type: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>>;

    /// Removes a dead letter (after a successful replay).
    fn remove_dead_letter<'a>(
        &'a self,
        event_type: &'a str,
        entry_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Stops intake: unsubscribes everything and closes the connections. Idempotent.
    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>>;
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Everything up to the last `@` is user information, whatever characters the password
    // holds (`/`, `?` and `#` included).
    match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let host_and_path = &rest[at + 1..];
            let user = match userinfo.split_once(':') {
                Some((u, _)) if !u.contains(['/', '?', '#']) => format!("{u}:***"),
                Some(_) => "***".to_owned(),
                None => "***".to_owned(),
            };
            format!("{scheme}://{user}@{host_and_path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://app:s3cret@127.0.0.1:6379/0"),
            "redis://app:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://s3cret@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://h:1/2"), "redis://h:1/2");
        assert_eq!(redact_url("nonsense"), "nonsense");
        assert_eq!(
            redact_url("redis://app:pa/ss?w#d@127.0.0.1:6379/0"),
            "redis://app:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://:a@b@h:1"), "redis://:***@h:1");
    }
}
