//! From incoming messages to handler runs: routing, decoding once per type, per-handler
//! queues and workers with timeout, panic catching and retries.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::Topic;
use crate::envelope::{DecodeError, RawEnvelope};
use crate::error::{DecodeFailure, Failure, FailureCause, HandlerFailure, OverflowFailure};
use crate::handler::{ArgKind, Delivery, ErasedHandler, HandlerContext};
use crate::metrics::{BusStats, HandlerStats};
use crate::options::{HandlerOptions, Overflow};
use crate::transport::{ConnectionEvent, DeadLetter, Inbound, Message, Transport};

pub(crate) type ErrorHook = Arc<dyn Fn(&Failure) + Send + Sync>;
pub(crate) type ConnectionHook = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

/// A bounded queue that never blocks the producer.
pub(crate) struct Queue {
    items: Mutex<QueueState>,
    notify: Notify,
    capacity: usize,
    overflow: Overflow,
}

struct QueueState {
    items: VecDeque<Delivery>,
    closed: bool,
}

/// What became of a pushed item.
enum Pushed {
    Queued,
    /// The queue was full; this item was dropped by the overflow policy.
    Dropped(Delivery),
    /// The queue was closed.
    Closed,
}

impl Queue {
    fn new(capacity: usize, overflow: Overflow) -> Self {
        Queue {
            items: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
            }),
            notify: Notify::new(),
            capacity,
            overflow,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an item, unless the queue is closed; a full queue drops by its policy.
    fn push(&self, item: Delivery) -> Pushed {
        let (pushed, was_empty) = {
            let mut q = self.lock();
            if q.closed {
                return Pushed::Closed;
            }
            let was_empty = q.items.is_empty();
            let pushed = if q.items.len() < self.capacity {
                q.items.push_back(item);
                Pushed::Queued
            } else {
                match self.overflow {
                    Overflow::DropNewest => Pushed::Dropped(item),
                    Overflow::DropOldest => {
                        let old = q.items.pop_front();
                        q.items.push_back(item);
                        old.map_or(Pushed::Queued, Pushed::Dropped)
                    }
                }
            };
            (pushed, was_empty)
        };
        // The worker looks at the queue before it waits, so only the first item needs a wakeup.
        if was_empty {
            self.notify.notify_one();
        }
        pushed
    }

    /// The next item; `None` once closed and empty.
    async fn pop(&self) -> Option<Delivery> {
        loop {
            {
                let mut q = self.lock();
                if let Some(item) = q.items.pop_front() {
                    return Some(item);
                }
                if q.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    fn clear(&self) -> usize {
        let mut q = self.lock();
        let n = q.items.len();
        q.items.clear();
        n
    }
}

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
}

impl Slot {
    pub(crate) fn new(
        id: u64,
        name: Arc<str>,
        topics: Vec<Topic>,
        kind: ArgKind,
        handler: Arc<dyn ErasedHandler>,
        options: HandlerOptions,
        cancel: CancellationToken,
    ) -> Self {
        let event_type: Arc<str> = match kind {
            ArgKind::Envelope { event_type, .. } => Arc::from(event_type),
            ArgKind::Raw => Arc::from("*"),
        };
        Slot {
            id,
            name,
            event_type,
            topics,
            kind,
            handler,
            queue: Queue::new(options.capacity, options.overflow),
            options,
            stats: HandlerStats::default(),
            cancel,
        }
    }
}

type SlotList = Arc<[Arc<Slot>]>;

#[derive(Default)]
struct Routes {
    channels: HashMap<String, SlotList>,
    patterns: HashMap<String, SlotList>,
    order: Vec<Arc<Slot>>,
}

impl Routes {
    fn map<'a>(&mut self, topic: &'a Topic) -> (&mut HashMap<String, SlotList>, &'a str) {
        match topic {
            Topic::Channel(c) => (&mut self.channels, c),
            Topic::Pattern(p) => (&mut self.patterns, p),
        }
    }
}

/// The bus side of the transport: routes each message to the queues of its handlers.
pub(crate) struct Dispatcher {
    routes: RwLock<Routes>,
    pub(crate) stats: BusStats,
    on_error: Option<ErrorHook>,
    on_connection: Option<ConnectionHook>,
    pub(crate) connection_tx: broadcast::Sender<ConnectionEvent>,
    max_message_size: usize,
    pub(crate) transport: OnceLock<Weak<dyn Transport>>,
    pub(crate) tracker: TaskTracker,
}

impl Dispatcher {
    pub(crate) fn new(
        on_error: Option<ErrorHook>,
        on_connection: Option<ConnectionHook>,
        max_message_size: usize,
    ) -> Self {
        Dispatcher {
            routes: RwLock::default(),
            stats: BusStats::default(),
            on_error,
            on_connection,
            connection_tx: broadcast::channel(64).0,
            max_message_size,
            transport: OnceLock::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Adds a handler; returns the topics that had no handler before.
    pub(crate) fn add(&self, slot: Arc<Slot>) -> Vec<Topic> {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh = Vec::new();
        for topic in &slot.topics {
            let (map, key) = routes.map(topic);
            let list = map.entry(key.to_owned()).or_insert_with(|| Arc::from([]));
            if list.is_empty() {
                fresh.push(topic.clone());
            }
            let mut v = list.to_vec();
            v.push(slot.clone());
            *list = Arc::from(v);
        }
        routes.order.push(slot);
        fresh
    }

    /// Removes a handler; returns the topics that have no handler left.
    pub(crate) fn remove(&self, id: u64) -> (Option<Arc<Slot>>, Vec<Topic>) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let Some(pos) = routes.order.iter().position(|s| s.id == id) else {
            return (None, Vec::new());
        };
        let slot = routes.order.remove(pos);
        let mut gone = Vec::new();
        for topic in &slot.topics {
            let (map, key) = routes.map(topic);
            if let Some(list) = map.get_mut(key) {
                let v: Vec<_> = list.iter().filter(|s| s.id != id).cloned().collect();
                if v.is_empty() {
                    map.remove(key);
                    gone.push(topic.clone());
                } else {
                    *list = Arc::from(v);
                }
            }
        }
        (Some(slot), gone)
    }

    /// The topics whose only handler is `id`.
    pub(crate) fn topics_held_only_by(&self, id: u64) -> Vec<Topic> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = routes.order.iter().find(|s| s.id == id) else {
            return Vec::new();
        };
        slot.topics
            .iter()
            .filter(|t| {
                let list = match t {
                    Topic::Channel(c) => routes.channels.get(c),
                    Topic::Pattern(p) => routes.patterns.get(p),
                };
                list.is_some_and(|l| l.iter().all(|s| s.id == id))
            })
            .cloned()
            .collect()
    }

    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .clone()
    }

    pub(crate) fn topics(&self) -> Vec<Topic> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .channels
            .keys()
            .map(|c| Topic::Channel(c.clone()))
            .chain(routes.patterns.keys().map(|p| Topic::Pattern(p.clone())))
            .collect()
    }

    pub(crate) fn report(&self, failure: Failure) {
        match &self.on_error {
            Some(hook) => {
                let hook = hook.clone();
                if std::panic::catch_unwind(AssertUnwindSafe(|| hook(&failure))).is_err() {
                    tracing::error!(%failure, "the error hook panicked while reporting");
                }
            }
            None => tracing::warn!(%failure, "eventbus failure"),
        }
    }

    fn decode_failed(&self, message: &Message, event_type: Option<&str>, error: DecodeError) {
        self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
        self.report(Failure::Decode(DecodeFailure {
            channel: message.channel.clone(),
            event_type: event_type.map(Arc::from),
            excerpt: message.excerpt(),
            len: message.payload.len(),
            error: Arc::new(error),
        }));
    }

    fn enqueue(&self, slot: &Slot, delivery: Delivery) {
        let dropped = match slot.queue.push(delivery) {
            Pushed::Queued => {
                slot.stats.received.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Pushed::Closed => {
                // The handler was removed while this message was being routed.
                self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Pushed::Dropped(dropped) => dropped,
        };
        slot.stats.received.fetch_add(1, Ordering::Relaxed);
        {
            let total = slot.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if total == 1 || total.is_multiple_of(1000) {
                self.report(Failure::Overflow(OverflowFailure {
                    handler: slot.name.clone(),
                    event_id: dropped.event_id().map(str::to_owned),
                    capacity: slot.queue.capacity,
                    dropped_total: total,
                }));
            }
        }
    }
}

impl Inbound for Dispatcher {
    fn message(&self, message: Message) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let slots = {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            match &message.pattern {
                Some(p) => routes.patterns.get(&**p).cloned(),
                None => routes.channels.get(&*message.channel).cloned(),
            }
        };
        let Some(slots) = slots else {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if message.payload.len() > self.max_message_size {
            self.decode_failed(
                &message,
                None,
                DecodeError::TooLarge {
                    size: message.payload.len(),
                    max: self.max_message_size,
                },
            );
            return;
        }
        let needs_envelope = slots
            .iter()
            .any(|s| matches!(s.kind, ArgKind::Envelope { .. }));
        let raw = if needs_envelope {
            match RawEnvelope::parse(&message.payload) {
                Ok(raw) => {
                    // Counted per type only for types a handler here declares, so that
                    // arbitrary `type` strings from the network cannot grow the map.
                    let declared = slots.iter().any(|s| {
                        matches!(s.kind, ArgKind::Envelope { event_type, .. } if event_type == raw.event_type())
                    });
                    if declared {
                        self.stats
                            .of_type(raw.event_type())
                            .received
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Arc::new(raw))
                }
                Err(e) => {
                    for s in slots.iter() {
                        if matches!(s.kind, ArgKind::Envelope { .. }) {
                            s.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    self.decode_failed(&message, None, e);
                    None
                }
            }
        } else {
            None
        };
        // Each argument type is decoded once, shared by its handlers.
        let mut decoded: Vec<(TypeId, Option<Arc<dyn Any + Send + Sync>>)> = Vec::new();
        // A type's handlers may take the data or the whole envelope, decoded separately; a
        // bad message is still reported and counted once per type.
        let mut reported: Vec<&'static str> = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            match slot.kind {
                ArgKind::Raw => self.enqueue(
                    slot,
                    Delivery {
                        message: message.clone(),
                        raw: raw.clone(),
                        decoded: None,
                    },
                ),
                ArgKind::Envelope {
                    key,
                    decode,
                    event_type,
                } => {
                    let Some(raw) = &raw else { continue };
                    let key = key();
                    let value = match decoded.iter().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.clone(),
                        None => {
                            let v = match decode(raw) {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    if !reported.contains(&event_type) {
                                        reported.push(event_type);
                                        self.stats
                                            .of_type(event_type)
                                            .decode_errors
                                            .fetch_add(1, Ordering::Relaxed);
                                        self.decode_failed(&message, Some(event_type), e);
                                    }
                                    None
                                }
                            };
                            decoded.push((key, v.clone()));
                            v
                        }
                    };
                    // The decoded value moves to the last handler of its type; the others
                    // decode their own copy on their worker, off the reader's path.
                    let last_of_type = !slots[i + 1..]
                        .iter()
                        .any(|s| matches!(s.kind, ArgKind::Envelope { key: k, .. } if k() == key));
                    match value {
                        Some(v) => self.enqueue(
                            slot,
                            Delivery {
                                message: message.clone(),
                                raw: Some(raw.clone()),
                                decoded: last_of_type.then_some(v),
                            },
                        ),
                        None => {
                            slot.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    fn connection(&self, event: ConnectionEvent) {
        match &event {
            ConnectionEvent::Disconnected { .. } => tracing::warn!(%event, "eventbus connection"),
            ConnectionEvent::Reconnected { .. } => {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%event, "eventbus connection");
            }
            _ => tracing::info!(%event, "eventbus connection"),
        }
        if let Some(hook) = &self.on_connection {
            let hook = hook.clone();
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| hook(&event)));
        }
        let _ = self.connection_tx.send(event);
    }
}

/// Starts the worker that empties a handler's queue.
pub(crate) fn spawn_worker(dispatcher: &Arc<Dispatcher>, slot: Arc<Slot>, ctx: HandlerContext) {
    let d = dispatcher.clone();
    dispatcher.tracker.spawn(async move {
        let permits = Arc::new(Semaphore::new(slot.options.concurrency));
        loop {
            // A free run slot first, then the event: an event is always either queued or
            // in flight, never held in between.
            let permit = if slot.options.concurrency == 1 {
                None
            } else {
                tokio::select! {
                    biased;
                    _ = slot.cancel.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p { Ok(p) => Some(p), Err(_) => break },
                }
            };
            let next = tokio::select! {
                biased;
                _ = slot.cancel.cancelled() => None,
                item = slot.queue.pop() => item,
            };
            let Some(delivery) = next else { break };
            if slot.options.concurrency == 1 {
                run(&d, &slot, &ctx, delivery).await;
            } else {
                let (d2, slot2, ctx2) = (d.clone(), slot.clone(), ctx.clone());
                d.tracker.spawn(async move {
                    run(&d2, &slot2, &ctx2, delivery).await;
                    drop(permit);
                });
            }
        }
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// One event through one handler, with every attempt its retry policy allows.
async fn run(d: &Dispatcher, slot: &Slot, ctx: &HandlerContext, mut delivery: Delivery) {
    slot.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let event_id = delivery.event_id().map(str::to_owned);
    let header = delivery.raw.as_deref().map(RawEnvelope::header);
    let span = tracing::info_span!(
        "eventbus.handle",
        otel.name = %format_args!("process {}", delivery.message.channel),
        messaging.system = "redis",
        messaging.operation.type = "process",
        messaging.destination.name = %delivery.message.channel,
        messaging.message.id = event_id.as_deref().unwrap_or(""),
        messaging.message.conversation_id = header.and_then(|h| h.correlation_id()),
        eventbus.traceparent = header
            .and_then(|h| h.traceparent())
            .filter(|t| crate::observe::is_valid_traceparent(t)),
        eventbus.handler = %slot.name,
        eventbus.event_type = %slot.event_type,
        eventbus.attempt = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::Span::current().record("eventbus.attempt", attempt);
            let started = Instant::now();
            let raw = delivery.raw.clone();
            let run_once =
                crate::observe::in_context(raw.as_ref(), attempt_once(slot, ctx, &mut delivery));
            let outcome = tokio::select! {
                biased;
                // Shutdown's deadline passed: the run is abandoned, and counted there.
                _ = slot.cancel.cancelled() => break,
                outcome = run_once => outcome,
            };
            let cause = match outcome {
                Ok(()) => {
                    slot.stats.latency.record(started.elapsed());
                    slot.stats.handled.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(cause) => cause,
            };
            match &cause {
                FailureCause::Panic(_) => slot.stats.panicked.fetch_add(1, Ordering::Relaxed),
                FailureCause::Timeout(_) => slot.stats.timed_out.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            let will_retry =
                slot.options.retry.should_retry(attempt, &cause) && !slot.cancel.is_cancelled();
            tracing::Span::current().record(
                "error.type",
                match &cause {
                    FailureCause::Error(_) => "error",
                    FailureCause::Panic(_) => "panic",
                    FailureCause::Timeout(_) => "timeout",
                    FailureCause::Extract(_) => "extract",
                },
            );
            let last_error = cause.to_string();
            d.report(Failure::Handler(HandlerFailure {
                handler: slot.name.clone(),
                event_type: slot.event_type.clone(),
                event_id: event_id.clone(),
                channel: delivery.message.channel.clone(),
                attempt,
                will_retry,
                cause,
            }));
            if will_retry {
                slot.stats.retried.fetch_add(1, Ordering::Relaxed);
                let delay = slot.options.retry.delay(attempt);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    // Shutdown's deadline passed while waiting: abandoned, counted there.
                    _ = slot.cancel.cancelled() => break,
                }
            }
            slot.stats.failed.fetch_add(1, Ordering::Relaxed);
            if slot.options.dead_letters_on() {
                dead_letter(d, slot, &delivery, attempt, last_error).await;
            }
            break;
        }
    }
    .instrument(span)
    .await;
    slot.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
}

async fn attempt_once(
    slot: &Slot,
    ctx: &HandlerContext,
    delivery: &mut Delivery,
) -> Result<(), FailureCause> {
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| slot.handler.call(delivery, ctx)))
    {
        Err(panic) => return Err(FailureCause::Panic(panic_message(&*panic))),
        Ok(Err(why)) => return Err(FailureCause::Extract(why)),
        Ok(Ok(fut)) => AssertUnwindSafe(fut).catch_unwind(),
    };
    let result = match slot.options.timeout {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => return Err(FailureCause::Timeout(limit)),
        },
        None => fut.await,
    };
    match result {
        Err(panic) => Err(FailureCause::Panic(panic_message(&*panic))),
        Ok(Err(e)) => Err(FailureCause::Error(Arc::from(e))),
        Ok(Ok(())) => Ok(()),
    }
}

async fn dead_letter(
    d: &Dispatcher,
    slot: &Slot,
    delivery: &Delivery,
    attempts: u32,
    error: String,
) {
    let Some(transport) = d.transport.get().and_then(Weak::upgrade) else {
        d.report(Failure::DeadLetter {
            handler: slot.name.clone(),
            error: "the transport is gone".to_owned(),
        });
        return;
    };
    let event_type = delivery
        .raw
        .as_deref()
        .map(|r| r.event_type().to_owned())
        .unwrap_or_else(|| slot.event_type.to_string());
    let letter = DeadLetter {
        entry_id: String::new(),
        event_type,
        channel: delivery.message.channel.to_string(),
        handler: slot.name.to_string(),
        error,
        attempts,
        payload: delivery.message.payload.clone(),
    };
    match tokio::time::timeout(Duration::from_secs(5), transport.store_dead_letter(&letter)).await {
        Ok(Ok(_)) => {
            slot.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => d.report(Failure::DeadLetter {
            handler: slot.name.clone(),
            error: e.to_string(),
        }),
        Err(_) => d.report(Failure::DeadLetter {
            handler: slot.name.clone(),
            error: "the store did not answer within 5s".to_owned(),
        }),
    }
}

/// Closes a handler's queue: its worker finishes what is queued, then stops.
pub(crate) fn close_slot(slot: &Slot) {
    slot.queue.close();
}

/// Drops what is still queued for a handler; returns how many events that was.
pub(crate) fn abandon_slot(slot: &Slot) -> usize {
    slot.cancel.cancel();
    slot.queue.clear()
}
