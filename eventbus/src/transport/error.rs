//! The error a transport returns.

use std::fmt;

use super::BoxError;
use crate::error::{Detail, ErrorKind};

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
