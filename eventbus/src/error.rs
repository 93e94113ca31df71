//! Errors and failure reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::envelope::DecodeError;
use crate::transport::{BoxError, Detail, ErrorKind, TransportError};

/// One error type per operation, each with its own `#[non_exhaustive]` kind. A transport's
/// error converts into it, its kind mapped by name (`fallback` when the operation has no
/// kind of that name).
macro_rules! op_error {
    (
        $(#[$doc:meta])* $name:ident,
        $(#[$kdoc:meta])* $kind:ident { $($(#[$vdoc:meta])* $variant:ident),* $(,)? },
        $(own { $($(#[$odoc:meta])* $own:ident),* $(,)? },)?
        fallback $fallback:ident
    ) => {
        $(#[$kdoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $kind {
            $($(#[$vdoc])* $variant,)*
            $($($(#[$odoc])* $own,)*)?
        }

        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            kind: $kind,
            detail: Detail,
        }

        impl $name {
            #[allow(dead_code)]
            pub(crate) fn new(kind: $kind, message: impl Into<String>) -> Self {
                $name { kind, detail: Detail::new(message) }
            }

            #[allow(dead_code)]
            pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
                self.detail.source = Some(source.into());
                self
            }

            /// What went wrong.
            pub fn kind(&self) -> $kind {
                self.kind
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.detail.message)
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.detail.source()
            }
        }

        impl From<TransportError> for $name {
            fn from(e: TransportError) -> Self {
                // The transport error's message becomes ours and its cause our source, so
                // the chain names each cause once.
                let (kind, detail) = e.into_parts();
                #[allow(unreachable_patterns)]
                let kind = match kind {
                    $(ErrorKind::$variant => $kind::$variant,)*
                    _ => $kind::$fallback,
                };
                $name { kind, detail }
            }
        }
    };
}

op_error! {
    /// The bus could not be set up or could not connect.
    ConnectError,
    /// Why connecting failed.
    ConnectErrorKind {
        /// The URL could not be understood, or names a transport this build does not include.
        InvalidUrl,
        /// The server could not be reached.
        Unreachable,
        /// The server refused the credentials.
        Auth,
        /// The server did not answer in time.
        Timeout,
        /// The bus was set up wrongly (a handler needs state nobody provided, a bad option).
        Config,
        /// The server answered with an error.
        Server,
    },
    own {
        /// PostgreSQL refused or could not set up the outbox or inbox tables.
        Database,
    },
    fallback Server
}

op_error! {
    /// An event could not be published.
    PublishError,
    /// Why publishing failed.
    PublishErrorKind {
        /// The bus was shut down.
        Closed,
        /// The message is larger than the configured maximum.
        TooLarge,
        /// The event could not be encoded (a non-finite number, an empty id).
        Encode,
        /// A bad channel name or key.
        Config,
        /// The connection is down and did not come back before the publish deadline.
        Disconnected,
        /// The server did not answer in time, or the publish queue stayed full.
        Timeout,
        /// The server refused the credentials or a permission.
        Auth,
        /// The server answered with an error.
        Server,
    },
    own {
        /// PostgreSQL could not take the outbox row (the transaction is still the caller's
        /// to roll back).
        Database,
    },
    fallback Server
}

op_error! {
    /// A subscription could not be made, ended or confirmed.
    SubscribeError,
    /// Why subscribing failed.
    SubscribeErrorKind {
        /// The bus was shut down.
        Closed,
        /// A bad topic, or a handler that needs state nobody provided.
        Config,
        /// The subscriber connection is down.
        Disconnected,
        /// The server did not confirm in time.
        Timeout,
        /// The server refused the credentials or a permission.
        Auth,
        /// The server answered with an error.
        Server,
    },
    fallback Server
}

op_error! {
    /// A query or administrative command failed: `ping`, the pub/sub queries, dead letters.
    QueryError,
    /// Why the query failed.
    QueryErrorKind {
        /// The bus was shut down.
        Closed,
        /// The transport does not offer this query.
        Unsupported,
        /// The connection is down and did not come back before the deadline.
        Disconnected,
        /// The server did not answer in time.
        Timeout,
        /// The server refused the credentials or a permission.
        Auth,
        /// The server answered with an error.
        Server,
    },
    own {
        /// PostgreSQL refused or could not answer a query about the outbox.
        Database,
    },
    fallback Server
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

impl FailureCause {
    /// A one-word name of the cause: `error`, `panic`, `timeout` or `extract`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            FailureCause::Error(_) => "error",
            FailureCause::Panic(_) => "panic",
            FailureCause::Timeout(_) => "timeout",
            FailureCause::Extract(_) => "extract",
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

/// A message that could not be decoded: counted, reported, and dropped (a durable entry:
/// stored as a dead letter and acknowledged, see [`entry_id`](Self::entry_id)).
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
    /// For an entry of a durable stream: its id. It goes to the dead letters at once, without
    /// a run of the handler, and is acknowledged once its dead letter is stored.
    pub entry_id: Option<String>,
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry_id {
            Some(id) => write!(
                f,
                "entry {id} of `{}` cannot be handled and goes to the dead letters",
                self.channel
            )?,
            None => write!(f, "dropped a message on `{}`", self.channel)?,
        }
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
    /// A dead letter could not be stored. A pub/sub event is lost; a durable entry is not
    /// acknowledged: it stays pending, to be delivered again.
    DeadLetter {
        /// The handler whose event it was.
        handler: Arc<str>,
        /// Why storing failed.
        error: String,
    },
    /// An at-least-once message could not be acknowledged: it stays pending and is delivered
    /// again.
    Ack {
        /// The handler that finished it.
        handler: Arc<str>,
        /// The entry that stays pending.
        entry_id: String,
        /// Why acknowledging failed.
        error: String,
    },
    /// A durable entry was trimmed from its stream (by the stream's retention) while it was
    /// pending: it can never be handled. It was acknowledged, so the group moves on.
    Trimmed {
        /// The handler whose group held it.
        handler: Arc<str>,
        /// The trimmed entry.
        entry_id: String,
    },
    /// A consumer group of this service on one of its durable streams holds pending or
    /// unread entries, but no handler reads it: reported once at start-up.
    OrphanedGroup(OrphanedGroup),
    /// A durable entry was delivered more often than its handler's `max_deliveries`: it is
    /// poison, and goes to the dead letters without another run of the handler (acknowledged
    /// once its dead letter is stored).
    Poison {
        /// The handler whose group held it.
        handler: Arc<str>,
        /// The entry.
        entry_id: String,
        /// Its envelope's id, when it has one.
        event_id: Option<String>,
        /// How many times it was delivered, this time included.
        deliveries: u32,
        /// The handler's `max_deliveries`.
        max_deliveries: u32,
    },
    /// The outbox relay could not read, publish or remove rows: it waits and tries again, and
    /// the rows stay in the outbox meanwhile.
    Relay {
        /// What failed.
        error: String,
    },
    /// An outbox row that Redis can never take (larger than the bus's maximum message, or
    /// refused by the server for its key) was moved to the outbox's poison table rather than
    /// tried forever.
    OutboxPoison {
        /// The event's id.
        event_id: String,
        /// The channel or stream it was for.
        key: String,
        /// Why it was moved aside.
        reason: String,
    },
    /// A handler's transaction could not be opened, run or committed because PostgreSQL
    /// could not be reached (or refused the inbox row): the run is made again after a pause,
    /// without using up an attempt of the retry policy; the event stays held meanwhile.
    Inbox {
        /// The handler whose event it was.
        handler: Arc<str>,
        /// What failed.
        error: String,
    },
    /// The de-duplication store could not be read or written: the event was handled anyway
    /// (at-least-once wins), so a redelivery may run the handler again.
    Dedupe {
        /// The handler whose event it was.
        handler: Arc<str>,
        /// Why the store failed.
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
            Failure::Ack {
                handler,
                entry_id,
                error,
            } => write!(
                f,
                "handler `{handler}` finished entry {entry_id}, but acknowledging it failed \
                 (it will be delivered again): {error}"
            ),
            Failure::Trimmed { handler, entry_id } => write!(
                f,
                "entry {entry_id} pending on handler `{handler}` was trimmed from its stream \
                 before it was handled: raise the stream retention above how far consumers fall \
                 behind"
            ),
            Failure::OrphanedGroup(o) => o.fmt(f),
            Failure::Poison {
                handler,
                entry_id,
                event_id,
                deliveries,
                max_deliveries,
            } => {
                write!(f, "entry {entry_id}")?;
                if let Some(id) = event_id {
                    write!(f, " (event {id})")?;
                }
                write!(
                    f,
                    " of handler `{handler}` is poison: delivered {deliveries} times, more than \
                     its max_deliveries of {max_deliveries}; it goes to the dead letters without \
                     another run"
                )
            }
            Failure::Dedupe { handler, error } => write!(
                f,
                "de-duplication store for handler `{handler}` failed, the event was handled \
                 without it: {error}"
            ),
            Failure::Relay { .. } | Failure::OutboxPoison { .. } | Failure::Inbox { .. } => {
                self.fmt_database(f)
            }
        }
    }
}

impl Failure {
    /// The outbox's and the inbox's failures.
    fn fmt_database(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Relay { error } => write!(
                f,
                "the outbox relay failed and tries again, its rows wait meanwhile: {error}"
            ),
            Failure::OutboxPoison {
                event_id,
                key,
                reason,
            } => write!(
                f,
                "outbox row of event {event_id} for `{key}` was moved to the poison table, \
                     Redis can never take it: {reason}"
            ),
            Failure::Inbox { handler, error } => write!(
                f,
                "handler `{handler}` could not run in its transaction, it runs again after a \
                     pause: {error}"
            ),
            _ => Ok(()),
        }
    }
}

/// A consumer group of the service that no handler of the bus reads, though it holds pending
/// or unread entries: typically the group of a handler that was renamed, or given another
/// group, in a deploy. Its entries wait until the group is moved or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrphanedGroup {
    /// The service whose group it is (the group's name starts with `<service>:`).
    pub service: String,
    /// The stream.
    pub stream: String,
    /// The group no handler reads.
    pub group: String,
    /// Entries delivered to its consumers and never acknowledged.
    pub pending: u64,
    /// Entries not delivered to it yet; `None` when the server cannot tell.
    pub lag: Option<u64>,
    /// The group a handler of the service reads on the same stream, where the work can move.
    pub successor: Option<String>,
}

impl OrphanedGroup {
    pub(crate) fn new(
        service: &str,
        status: crate::transport::GroupStatus,
        successor: Option<String>,
    ) -> Self {
        OrphanedGroup {
            service: service.to_owned(),
            stream: status.stream,
            group: status.group,
            pending: status.pending,
            lag: status.lag,
            successor,
        }
    }
}

impl fmt::Display for OrphanedGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (stream, group) = (&self.stream, &self.group);
        let unread = self
            .lag
            .map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
        write!(
            f,
            "consumer group `{group}` of service `{}` on `{stream}` holds {} pending and {unread} \
             unread entries, but no handler reads it (a handler renamed or given another group?): ",
            self.service, self.pending
        )?;
        match &self.successor {
            Some(to) => write!(
                f,
                "move its position to the handler's group with `eventbus groups move {stream} \
                 {group} {to}`, or delete it with `eventbus groups delete {stream} {group}`"
            ),
            None => write!(
                f,
                "delete it with `eventbus groups delete {stream} {group}` if nothing will read it"
            ),
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
    /// Durable entries read but not started: left pending (unacknowledged) in their consumer
    /// group, to be delivered again to the next consumer. Not lost, so not an error.
    pub left_pending: u64,
}

/// Shutting down reached its deadline with events unprocessed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shutdown deadline passed with {} event(s) unprocessed", .report.unprocessed)]
pub struct ShutdownError {
    /// What was and was not done.
    pub report: ShutdownReport,
}
