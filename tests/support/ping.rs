//! The event most end-to-end tests send: [`Ping`].

use eventbus::Event;
use serde::{Deserialize, Serialize};

/// A numbered ping: type `ping`, channel `events:ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
pub struct Ping {
    /// Its number, so a test can tell pings apart.
    pub n: u64,
}
