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
