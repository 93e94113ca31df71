//! The error a transport returns, and its vocabulary: [`ErrorKind`], which each operation's
//! error maps to its own kind.

use std::fmt;

use super::BoxError;

/// What went wrong in a transport: the vocabulary of [`TransportError`], which each
/// operation's error maps to its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL could not be understood, or names a transport this build does not include.
    InvalidUrl,
    /// The server could not be reached.
    Unreachable,
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`) or a permission (`NOPERM`).
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
    /// The transport does not offer the operation (no dead-letter store, no pub/sub queries).
    Unsupported,
}

/// A message that never contains a password, and the cause it keeps.
#[derive(Debug)]
pub(crate) struct Detail {
    pub(crate) message: String,
    pub(crate) source: Option<BoxError>,
}

impl Detail {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Detail {
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error from a transport: a kind, a message that never contains a password, and the cause.
#[derive(Debug)]
pub struct TransportError {
    kind: ErrorKind,
    detail: Detail,
}

impl TransportError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            detail: Detail::new(message),
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.detail.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.detail.message
    }

    pub(crate) fn into_parts(self) -> (ErrorKind, Detail) {
        (self.kind, self.detail)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail.message)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail.source()
    }
}
