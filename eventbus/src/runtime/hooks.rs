//! Where the runtime reports: the user's error and connection hooks, logs, and the
//! connection-event channel.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::health::Health;
use crate::error::Failure;
use crate::sync::lock;
use crate::transport::ConnectionEvent;

pub(crate) type ErrorHook = Arc<dyn Fn(&Failure) + Send + Sync>;
pub(crate) type ConnectionHook = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

/// The bus's reporting hooks.
pub(crate) struct Hooks {
    on_error: Option<ErrorHook>,
    on_connection: Option<ConnectionHook>,
    pub(crate) connection_tx: broadcast::Sender<ConnectionEvent>,
    health: Mutex<Health>,
}

impl Hooks {
    pub(crate) fn new(on_error: Option<ErrorHook>, on_connection: Option<ConnectionHook>) -> Self {
        Hooks {
            on_error,
            on_connection,
            connection_tx: broadcast::channel(64).0,
            health: Mutex::default(),
        }
    }

    /// Reports a failure to the error hook, or logs it when there is none. A panicking hook is
    /// logged, never propagated.
    pub(crate) fn report(&self, failure: Failure) {
        match &self.on_error {
            Some(hook) => {
                if std::panic::catch_unwind(AssertUnwindSafe(|| hook(&failure))).is_err() {
                    tracing::error!(%failure, "the error hook panicked while reporting");
                }
            }
            None => tracing::warn!(%failure, "eventbus failure"),
        }
    }

    /// The connections' health, as their events told it.
    pub(crate) fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Logs a connection change, records it in the health snapshot and passes it to the hook
    /// and the event channel.
    pub(crate) fn connection(&self, event: ConnectionEvent) {
        lock(&self.health).apply(&event);
        match &event {
            ConnectionEvent::Disconnected { .. } => tracing::warn!(%event, "eventbus connection"),
            _ => tracing::info!(%event, "eventbus connection"),
        }
        if let Some(hook) = &self.on_connection
            && std::panic::catch_unwind(AssertUnwindSafe(|| hook(&event))).is_err()
        {
            tracing::error!(%event, "the connection hook panicked");
        }
        let _ = self.connection_tx.send(event);
    }
}
