//! The runtime: from an incoming message to handler runs.
//!
//! ```text
//! transport ─► Router (Inbound) ─► parse once, decode once per argument type
//!          ─► per-handler Queue (bounded, overflow policy) ─► worker: timeout, panic catch,
//!             retries ─► dead letter / hooks / metrics
//! ```
//!
//! The router never waits on a handler; each handler's worker runs on its own task.

mod dead_letter;
mod dedupe;
mod health;
mod hooks;
mod queue;
mod router;
mod slot;
#[cfg(feature = "postgres")]
mod transaction;
mod worker;

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::transport::Transport;

pub use health::{ConnectionHealth, ConnectionState, Health};
pub(crate) use hooks::{ConnectionHook, ErrorHook, Hooks};
pub(crate) use router::Router;
pub(crate) use slot::{Slot, SlotSpec};
pub(crate) use worker::current_run;
pub(crate) use worker::spawn_worker;

/// What the workers share: where to report, where dead letters go, and the tracker that
/// shutdown waits on.
pub(crate) struct Runtime {
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) tracker: TaskTracker,
    /// The inbox that handlers taking a `Tx` run with.
    #[cfg(feature = "postgres")]
    pub(crate) inbox: Option<Arc<crate::postgres::InboxStore>>,
}
