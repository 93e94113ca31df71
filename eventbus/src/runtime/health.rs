//! Connection health, as the bus saw it from the transport's connection events.

use std::time::SystemTime;

use crate::transport::ConnectionEvent;

/// A connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected (and, for a subscriber, subscribed again after a reconnect).
    Up,
    /// Lost; the transport is reconnecting.
    Down,
}

/// One connection's health.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionHealth {
    /// Which connection: `"publisher"` or `"subscriber"`.
    pub role: &'static str,
    /// Its state.
    pub state: ConnectionState,
    /// Since when it is in that state.
    pub since: SystemTime,
    /// The last error that took it down, if it ever went down.
    pub last_error: Option<String>,
}

/// The health of every connection the bus has seen: see [`EventBus::health`](crate::EventBus::health).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// One entry per connection role, in the order they were first seen.
    pub connections: Vec<ConnectionHealth>,
    /// Consumer groups of the service that hold pending or unread entries but that no
    /// handler reads, found at start-up: their entries wait until the group is moved or
    /// deleted (see [`OrphanedGroup`](crate::OrphanedGroup)).
    pub orphaned_groups: Vec<crate::OrphanedGroup>,
    /// The outbox as the bus's relay saw it last, when the bus has one: rows waiting past
    /// its `stalled_after` make the bus unhealthy.
    #[cfg(feature = "postgres")]
    pub outbox: Option<crate::postgres::OutboxMetrics>,
}

impl Health {
    /// Whether every connection is up (true for a bus with no connection to lose), and the
    /// outbox, when there is one, is not stalled.
    pub fn is_up(&self) -> bool {
        #[cfg(feature = "postgres")]
        if self.outbox.as_ref().is_some_and(|o| o.stalled) {
            return false;
        }
        self.connections
            .iter()
            .all(|c| c.state == ConnectionState::Up)
    }

    /// Updates the entry of the event's connection.
    pub(crate) fn apply(&mut self, event: &ConnectionEvent) {
        let (role, state, error) = match event {
            ConnectionEvent::Connected { role } | ConnectionEvent::Reconnected { role, .. } => {
                (*role, ConnectionState::Up, None)
            }
            ConnectionEvent::Disconnected { role, cause } => {
                (*role, ConnectionState::Down, Some(cause.clone()))
            }
            ConnectionEvent::Resubscribed { .. }
            | ConnectionEvent::Moved { .. }
            | ConnectionEvent::GroupRecreated { .. } => return,
        };
        let now = SystemTime::now();
        match self.connections.iter_mut().find(|c| c.role == role) {
            Some(c) => {
                if c.state != state {
                    c.state = state;
                    c.since = now;
                }
                if error.is_some() {
                    c.last_error = error;
                }
            }
            None => self.connections.push(ConnectionHealth {
                role,
                state,
                since: now,
                last_error: error,
            }),
        }
    }
}
