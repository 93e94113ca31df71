//! Errors and failure reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::envelope::DecodeError;
use crate::transport::{BoxError, TransportError};

/// What went wrong, shared by the bus's error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL could not be understood, or names a transport this build does not include.
    InvalidUrl,
    /// The server could not be reached.
    Unreachable,
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`).
    Auth,
    /// The server did not answer in time.
    Timeout,
    /// The connection is down and did not come back before the deadline.
    Disconnected,
    /// The bus or transport was shut down.
    Closed,
    /// The server answered with an error.
    Server,
    /// The message is larger than the configured maximum.
    TooLarge,
    /// The event could not be encoded.
    Encode,
    /// The bus was set up wrongly (a handler needs state nobody provided, a bad name).
    Config,
    /// The transport does not support the operation.
    Unsupported,
}

macro_rules! op_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            kind: ErrorKind,
            message: String,
            source: Option<BoxError>,
        }

        impl $name {
            pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
                $name { kind, message: message.into(), source: None }
            }

            #[allow(dead_code)]
            pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
                self.source = Some(source.into());
                self
            }

            /// What went wrong.
            pub fn kind(&self) -> ErrorKind {
                self.kind
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
            }
        }

        impl From<TransportError> for $name {
            fn from(e: TransportError) -> Self {
                // The transport error's message becomes ours and its cause our source, so
                // the chain names each cause once.
                let (kind, message, source) = e.into_parts();
                $name { kind, message, source }
            }
        }
    };
}

op_error! {
    /// The bus could not be set up or could not connect.
    ConnectError
}
op_error! {
    /// An event could not be published.
    PublishError
}
op_error! {
    /// A subscription could not be made or ended, or a query to the server failed.
    SubscribeError
}

/// Why a handler run failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FailureCause {
    /// The handler returned an error.
    Error(Arc<dyn std::error::Error + Send + Sync>),
    /// The handler panicked; the panic message.
    Panic(String),
    /// The handler ran past its timeout and was cancelled.
    Timeout(Duration),
    /// The handler's arguments could not be produced (missing state, the bus gone).
    Extract(String),
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Error(e) => {
                write!(f, "returned an error: {e}")?;
                let mut source = e.source();
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            FailureCause::Panic(m) => write!(f, "panicked: {m}"),
            FailureCause::Timeout(d) => write!(f, "timed out after {d:?}"),
            FailureCause::Extract(m) => write!(f, "could not be called: {m}"),
        }
    }
}

/// A handler run that failed: reported to the error hook after each failed attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandlerFailure {
    /// The handler's name.
    pub handler: Arc<str>,
    /// The event type (`*` for pattern and raw handlers).
    pub event_type: Arc<str>,
    /// The event id, when the message was an envelope.
    pub event_id: Option<String>,
    /// The channel the event arrived on.
    pub channel: Arc<str>,
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// Whether another attempt follows.
    pub will_retry: bool,
    /// Why it failed.
    pub cause: FailureCause,
}

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler `{}` {} (event `{}`",
            self.handler, self.cause, self.event_type
        )?;
        if let Some(id) = &self.event_id {
            write!(f, " id {id}")?;
        }
        write!(f, " on `{}`, attempt {}", self.channel, self.attempt)?;
        if self.will_retry {
            f.write_str(", will retry")?;
        }
        f.write_str(")")
    }
}

/// A message that could not be decoded: counted, reported, and dropped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DecodeFailure {
    /// The channel it arrived on.
    pub channel: Arc<str>,
    /// The event type that could not be decoded, or `None` when the envelope itself was bad.
    pub event_type: Option<Arc<str>>,
    /// The first bytes of the message.
    pub excerpt: String,
    /// The message's length in bytes.
    pub len: usize,
    /// What was wrong.
    pub error: Arc<DecodeError>,
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dropped a message on `{}`", self.channel)?;
        if let Some(t) = &self.event_type {
            write!(f, " for `{t}`")?;
        }
        write!(f, ": {} (first bytes: {:?})", self.error, self.excerpt)
    }
}

/// A handler's queue was full and an event was dropped by its overflow policy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OverflowFailure {
    /// The handler's name.
    pub handler: Arc<str>,
    /// The id of the dropped event, when known.
    pub event_id: Option<String>,
    /// The queue's capacity.
    pub capacity: usize,
    /// How many events this handler has dropped so far.
    pub dropped_total: u64,
}

impl fmt::Display for OverflowFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler `{}` is not keeping up: its queue of {} is full, {} event(s) dropped so far",
            self.handler, self.capacity, self.dropped_total
        )
    }
}

/// Anything the bus reports to its error hook.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Failure {
    /// A handler returned an error, panicked or timed out.
    Handler(HandlerFailure),
    /// A message could not be decoded.
    Decode(DecodeFailure),
    /// A handler's queue overflowed (reported for the first drop and every 1000th after).
    Overflow(OverflowFailure),
    /// A dead letter could not be stored; the event is lost.
    DeadLetter {
        /// The handler whose event it was.
        handler: Arc<str>,
        /// Why storing failed.
        error: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Handler(h) => h.fmt(f),
            Failure::Decode(d) => d.fmt(f),
            Failure::Overflow(o) => o.fmt(f),
            Failure::DeadLetter { handler, error } => {
                write!(
                    f,
                    "dead letter of handler `{handler}` could not be stored: {error}"
                )
            }
        }
    }
}

/// What shutting down left undone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Events handled while draining.
    pub drained: u64,
    /// Events still queued or in flight when the deadline passed; they were dropped.
    pub unprocessed: u64,
}

/// Shutting down reached its deadline with events unprocessed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shutdown deadline passed with {} event(s) unprocessed", .report.unprocessed)]
pub struct ShutdownError {
    /// What was and was not done.
    pub report: ShutdownReport,
}
