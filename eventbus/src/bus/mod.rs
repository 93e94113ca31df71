//! The bus: a cheap handle over the transport and the runtime.
//!
//! - [`builder`]: set-up, handlers, hooks, `connect(url)` / `connect_with(transport)`;
//! - [`publish`]: envelopes out; [`schedule`]: envelopes out later; [`subscription`] and [`stream`]: handlers after start-up;
//! - [`admin`]: readiness, health, pings, pub/sub queries, dead letters;
//! - [`shutdown`]: stop intake, drain, close.

mod admin;
mod builder;
mod group_watch;
mod groups;
#[cfg(feature = "postgres")]
mod outbox;
mod publish;
mod publish_all;
mod publish_options;
mod schedule;
mod settle;
mod shutdown;
mod stream;
mod subscription;
mod tasks;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Topic;
use crate::error::{ShutdownError, ShutdownReport};
use crate::handler::{FromContext, HandlerContext, StateMap};
use crate::metrics::{BusStats, Metrics};
use crate::runtime::{Router, Runtime, Slot, SlotSpec, spawn_worker};
use crate::transport::{
    Capabilities, ConnectionEvent, ErrorKind, GroupSpec, Transport, TransportError,
};

pub use crate::runtime::{ConnectionHealth, ConnectionState, Health};
pub use builder::EventBusBuilder;
#[cfg(feature = "postgres")]
pub use outbox::OutboxPublisher;
pub use publish::{PublishReceipt, RawReceipt};
pub use publish_options::PublishOptions;
pub use schedule::{ScheduleId, ScheduleReceipt};
pub use shutdown::shutdown_signal;
pub use stream::EventStream;
pub use subscription::Subscription;

/// The default largest message, in either direction: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// The bus: publishes events and runs the handlers of what arrives.
///
/// A cheap handle: clone it into every task that publishes. Create it with
/// [`EventBus::builder`]; stop it with [`shutdown`](EventBus::shutdown).
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("service", &self.inner.service)
            .field("transport", &self.inner.runtime.transport)
            .finish_non_exhaustive()
    }
}

/// Where the bus is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Publishing and subscribing.
    Running = 0,
    /// Shutdown began: no new subscriptions; handlers drain and may still publish.
    Draining = 1,
    /// Shut down: nothing works any more.
    Closed = 2,
}

struct BusInner {
    service: String,
    router: Arc<Router>,
    runtime: Arc<Runtime>,
    stats: Arc<BusStats>,
    state: Arc<StateMap>,
    cancel: CancellationToken,
    /// The bus's own background tasks, ended and waited for at shutdown.
    tasks: tasks::Tasks,
    phase: AtomicU8,
    /// Shared by every `shutdown()` call: one drain and one report.
    shutdown: tokio::sync::OnceCell<Result<ShutdownReport, ShutdownError>>,
    shutdown_timeout: Duration,
    max_message_size: usize,
    next_id: AtomicU64,
    /// This bus's consumer name in the consumer groups of durable handlers: unique per
    /// process and bus.
    consumer: String,
    /// Set when the tokio runtime that created the bus shut down: its workers and connection
    /// tasks are gone with it.
    runtime_gone: Arc<AtomicBool>,
    /// Orders changes of the server's subscriptions, so that an unsubscribe sent for a dropped
    /// subscription never overtakes a subscribe for a newer handler of the same topic.
    sub_lock: tokio::sync::Mutex<()>,
    /// The event types declared with `publishes`, for the AsyncAPI document.
    sends: Vec<crate::asyncapi::Described>,
    /// Groups of the service that no handler reads, found at start-up.
    orphans: std::sync::Mutex<Vec<crate::error::OrphanedGroup>>,
    /// The URL connected to, without its password (unset for `connect_with`).
    url: std::sync::OnceLock<String>,
    /// The outbox given to the builder, with its relay's view.
    #[cfg(feature = "postgres")]
    outbox: Option<crate::postgres::OutboxState>,
}

impl BusInner {
    fn transport(&self) -> &Arc<dyn Transport> {
        &self.runtime.transport
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Closed,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Why the bus cannot work from here, if the runtime that ran its tasks is gone.
    fn runtime_gone(&self) -> Option<&'static str> {
        self.runtime_gone.load(Ordering::Acquire).then_some(
            "the tokio runtime that created this bus has shut down, and the bus's handlers and \
             connections ran on it: create the bus on a runtime that outlives every use (for a \
             bus shared across tests, one runtime of its own)",
        )
    }
}

/// A consumer name unique to this process and bus: host, process id, a counter.
fn consumer_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sets the flag when the runtime it was spawned on drops its tasks, that is, shuts down;
/// ends quietly with the bus.
/// A flag set when the runtime that runs the bus's tasks shuts down while the bus is open:
/// the watch task is then dropped without its cancellation.
fn watch_runtime(tasks: &tasks::Tasks) -> Arc<AtomicBool> {
    struct Guard(Arc<AtomicBool>, CancellationToken);
    impl Drop for Guard {
        fn drop(&mut self) {
            if !self.1.is_cancelled() {
                self.0.store(true, Ordering::Release);
            }
        }
    }
    let gone = Arc::new(AtomicBool::new(false));
    let guard = Guard(gone.clone(), tasks.cancelled().clone());
    tasks.spawn(None, async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    gone
}

impl Drop for BusInner {
    fn drop(&mut self) {
        // The last handle went without `shutdown()`: what is still queued is discarded, and
        // said so.
        let slots = self.router.slots();
        let discarded: u64 = slots.iter().map(|s| s.abandon()).sum();
        self.cancel.cancel();
        if discarded > 0 {
            tracing::warn!(
                discarded,
                "the last EventBus handle was dropped without shutdown(): queued and running \
                 events were discarded"
            );
        }
    }
}

impl FromContext for EventBus {
    fn from_context(ctx: &HandlerContext) -> Result<Self, String> {
        ctx.bus
            .upgrade()
            .and_then(|any| any.downcast::<BusInner>().ok())
            .map(|inner| EventBus { inner })
            .ok_or_else(|| "the bus has been dropped".to_owned())
    }
}

impl EventBus {
    /// Starts setting up a bus.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::new()
    }

    /// Registers a handler and starts its worker (a pull stream has none); returns its slot
    /// and the topics that had no handler before.
    fn register(&self, spec: SlotSpec, worker: bool) -> (Arc<Slot>, Vec<Topic>) {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let group = groups::group_name(&inner.service, &spec);
        #[cfg(feature = "postgres")]
        let scope = groups::inbox_scope(&inner.service, &spec);
        let slot = Arc::new(Slot::new(
            id,
            spec,
            inner.cancel.child_token(),
            !worker,
            group,
            #[cfg(feature = "postgres")]
            scope,
        ));
        let fresh = inner.router.add(slot.clone());
        if worker {
            let weak: Weak<BusInner> = Arc::downgrade(&self.inner);
            let ctx = HandlerContext {
                bus: weak as Weak<dyn Any + Send + Sync>,
                state: inner.state.clone(),
            };
            spawn_worker(&inner.runtime, slot.clone(), ctx);
        }
        (slot, fresh)
    }

    /// Starts reading for a durable handler's consumer group; nothing for other handlers.
    async fn join(&self, slot: &Slot) -> Result<(), TransportError> {
        let delayed = !slot.options.retry.delayed_retries().is_empty();
        let Some(group) = &slot.group else {
            return Ok(());
        };
        if delayed && !self.capabilities().schedule {
            return Err(no_delayed_retries(slot, "this transport keeps no schedule"));
        }
        let Some(Topic::Channel(stream)) = slot.topics.first() else {
            return Err(TransportError::new(
                ErrorKind::Config,
                format!(
                    "handler `{}` takes a durable event, which is read from its stream: it \
                     cannot listen on a pattern",
                    slot.name
                ),
            ));
        };
        let durable = &slot.options.durable;
        let mut spec = GroupSpec::new(stream.clone(), group.to_string(), &*self.inner.consumer)
            .start(durable.start)
            .claim_idle(durable.claim_idle)
            .delayed_retries(delayed);
        spec.consumer_expiry = durable.consumer_expiry;
        self.inner.transport().join(&spec).await
    }

    /// The service name, written as `source` into published envelopes.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// What the transport supports (patterns, acknowledgements, sharded channels, replay).
    pub fn capabilities(&self) -> Capabilities {
        self.inner.transport().capabilities()
    }

    /// A snapshot of the counters: published, received, handled, failed, dropped, latency.
    pub fn metrics(&self) -> Metrics {
        let handlers = self
            .inner
            .router
            .slots()
            .iter()
            .map(|s| s.snapshot())
            .collect();
        let mut metrics = self.inner.stats.snapshot(handlers);
        metrics.orphaned_groups = crate::sync::lock(&self.inner.orphans).len() as u64;
        if let Some(scheduler) = self.inner.transport().scheduler() {
            metrics.scheduled = scheduler.mover();
        }
        #[cfg(feature = "postgres")]
        {
            metrics.outbox = self.outbox_metrics();
        }
        metrics
    }

    /// Connection state changes from now on (see also
    /// [`EventBusBuilder::on_connection`]).
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.runtime.hooks.connection_tx.subscribe()
    }

    /// The service's AsyncAPI 3.0 document: the channels it publishes to (the types declared
    /// with [`EventBusBuilder::publishes`]) and receives on (its typed handlers' types, with
    /// their consumer groups), each message a CloudEvents envelope around the event's data
    /// (with its JSON Schema under the `schema` feature), each channel's delivery model
    /// (`x-eventbus-delivery`: `pubsub` or `durable`), and the server without its password.
    ///
    /// ```
    /// # async fn run() -> anyhow::Result<()> {
    /// let bus = eventbus::EventBus::builder().service("billing").connect("memory://").await?;
    /// let doc = bus.asyncapi();
    /// assert_eq!(doc["asyncapi"], "3.0.0");
    /// std::fs::write("asyncapi.json", serde_json::to_string_pretty(&doc)?)?;
    /// # Ok(()) }
    /// ```
    pub fn asyncapi(&self) -> serde_json::Value {
        let mut receives = Vec::new();
        for slot in self.inner.router.slots() {
            let described =
                crate::asyncapi::Described::handled(&slot.kind, &slot.name, slot.group.as_deref());
            if let Some(d) = described {
                crate::asyncapi::add(&mut receives, d);
            }
        }
        let url = self.inner.url.get().map(String::as_str);
        crate::asyncapi::document(&self.inner.service, url, &self.inner.sends, &receives)
    }

    /// The topics this bus holds subscriptions for.
    pub fn topics(&self) -> Vec<Topic> {
        self.inner.router.topics()
    }
}

/// The error of a handler whose delayed retries cannot work, and why.
fn no_delayed_retries(slot: &Slot, why: &str) -> TransportError {
    TransportError::new(
        ErrorKind::Config,
        format!(
            "handler `{}` has delayed retries (RetryPolicy::then_delayed), but {why}",
            slot.name
        ),
    )
}
