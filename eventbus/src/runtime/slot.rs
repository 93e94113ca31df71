//! One registered handler: its queue, options and counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::queue::Queue;
use crate::Topic;
use crate::handler::{ArgKind, ErasedHandler};
use crate::metrics::{HandlerMetrics, HandlerStats};
use crate::options::HandlerOptions;

/// How many entries a durable handler holds at most, queued and running (at least twice its
/// concurrency).
const DURABLE_PREFETCH: usize = 256;

/// One registered handler: its queue, worker options and counters.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) event_type: Arc<str>,
    pub(crate) topics: Vec<Topic>,
    pub(crate) kind: ArgKind,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) options: HandlerOptions,
    pub(crate) queue: Queue,
    pub(crate) stats: HandlerStats,
    pub(crate) cancel: CancellationToken,
    /// Read by a pull stream rather than a worker: shutdown does not wait for it.
    pub(crate) pull: bool,
    /// For a handler of a durable type: the consumer group it reads for.
    pub(crate) group: Option<Arc<str>>,
    /// Whether each run is in a database transaction (the handler takes a `Tx`).
    #[cfg(feature = "postgres")]
    pub(crate) transactional: bool,
    /// For a handler that takes a `Tx`: the scope of its inbox rows.
    #[cfg(feature = "postgres")]
    pub(crate) inbox_scope: Option<Arc<str>>,
}

/// What registering a handler needs to know about it.
pub(crate) struct SlotSpec {
    pub(crate) name: String,
    pub(crate) topics: Vec<Topic>,
    pub(crate) kind: ArgKind,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) options: HandlerOptions,
}

impl SlotSpec {
    /// Whether the handler's event type is durable.
    pub(crate) fn is_durable(&self) -> bool {
        matches!(self.kind, ArgKind::Envelope { durable: true, .. })
    }
}

impl Slot {
    pub(crate) fn new(
        id: u64,
        spec: SlotSpec,
        cancel: CancellationToken,
        pull: bool,
        group: Option<String>,
        #[cfg(feature = "postgres")] inbox_scope: Option<String>,
    ) -> Self {
        #[cfg(feature = "postgres")]
        let transactional = spec.handler.transactions() > 0;
        let event_type: Arc<str> = match spec.kind {
            ArgKind::Envelope { event_type, .. } => Arc::from(event_type),
            ArgKind::Raw => Arc::from("*"),
        };
        // A durable handler reads only as much as its queue takes: a short queue keeps entries
        // from waiting so long in it that another consumer claims them.
        let capacity = match group {
            Some(_) => spec
                .options
                .capacity
                .min(DURABLE_PREFETCH.max(2 * spec.options.concurrency)),
            None => spec.options.capacity,
        };
        Slot {
            id,
            name: Arc::from(spec.name),
            event_type,
            topics: spec.topics,
            kind: spec.kind,
            handler: spec.handler,
            queue: Queue::new(capacity, spec.options.overflow),
            options: spec.options,
            stats: HandlerStats::default(),
            cancel,
            pull,
            group: group.map(Arc::from),
            #[cfg(feature = "postgres")]
            transactional,
            #[cfg(feature = "postgres")]
            inbox_scope: inbox_scope.map(Arc::from),
        }
    }

    /// Closes the queue: the worker finishes what is queued, then stops.
    pub(crate) fn close(&self) {
        self.queue.close();
    }

    /// Cancels running work and drops what is queued; returns how many events that was,
    /// the runs cut short included.
    pub(crate) fn abandon(&self) -> u64 {
        let running = self.stats.in_flight.load(Ordering::Relaxed);
        self.cancel.cancel();
        self.queue.clear() as u64 + running
    }

    /// Events handled or given up on (failed) so far.
    pub(crate) fn finished(&self) -> u64 {
        self.stats.handled.load(Ordering::Relaxed) + self.stats.failed.load(Ordering::Relaxed)
    }

    /// How many runs are under way.
    pub(crate) fn running(&self) -> u64 {
        self.stats.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> HandlerMetrics {
        self.stats
            .snapshot(&self.name, &self.event_type, self.queue.len())
    }
}
