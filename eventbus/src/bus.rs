//! The bus: builder, publishing, subscribing, monitoring and shutdown.

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Topic;
use crate::dispatch::{self, ConnectionHook, Dispatcher, ErrorHook, Slot};
use crate::envelope::Envelope;
use crate::error::{
    ConnectError, ErrorKind, Failure, PublishError, ShutdownError, ShutdownReport, SubscribeError,
};
use crate::event::{Event, check_name};
use crate::handler::{
    ArgKind, ArgSpec, ErasedHandler, Handler, HandlerContext, StateMap, StateMapView,
};
use crate::metrics::Metrics;
use crate::options::HandlerOptions;
use crate::transport::memory::MemoryTransport;
use crate::transport::{ConnectionEvent, DeadLetter, Inbound, Transport};

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
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

pub(crate) struct BusInner {
    service: String,
    transport: Arc<dyn Transport>,
    dispatcher: Arc<Dispatcher>,
    state: Arc<StateMap>,
    cancel: CancellationToken,
    closed: AtomicBool,
    shutdown_timeout: Duration,
    max_message_size: usize,
    next_id: AtomicU64,
    /// Orders changes of the server's subscriptions, so that an unsubscribe sent for a dropped
    /// subscription never overtakes a subscribe for a newer handler of the same topic.
    sub_lock: tokio::sync::Mutex<()>,
}

impl Drop for BusInner {
    fn drop(&mut self) {
        self.cancel.cancel();
        for slot in self.dispatcher.slots() {
            dispatch::close_slot(&slot);
        }
    }
}

/// What publishing returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReceipt {
    /// The event id.
    pub id: String,
    /// The channel it was published on.
    pub channel: String,
    /// What `PUBLISH` returned: how many subscriptions received it. A bus that holds both a
    /// channel and a pattern matching it counts twice, and so receives it twice.
    pub receivers: u64,
}

/// Attributes to set on a published envelope.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PublishOptions {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
}

impl PublishOptions {
    /// No extra attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A follow-up of `cause`: the same correlation id (or `cause`'s id when it has none) and
    /// `cause`'s id as causation id.
    pub fn caused_by<T>(cause: &Envelope<T>) -> Self {
        PublishOptions {
            correlation_id: Some(
                cause
                    .correlation_id()
                    .map(str::to_owned)
                    .unwrap_or_else(|| cause.id().to_owned()),
            ),
            causation_id: Some(cause.id().to_owned()),
            traceparent: cause.traceparent().map(str::to_owned),
        }
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the W3C `traceparent`.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }
}

struct PendingHandler {
    kind: ArgKind,
    topics: Vec<Topic>,
    handler: Arc<dyn ErasedHandler>,
    options: HandlerOptions,
    name: String,
}

/// Sets up an [`EventBus`]: service name, handlers, hooks, then [`connect`](Self::connect).
#[must_use = "a builder does nothing until `.connect(url).await`"]
pub struct EventBusBuilder {
    service: Option<String>,
    handlers: Vec<PendingHandler>,
    on_error: Option<ErrorHook>,
    on_connection: Option<ConnectionHook>,
    state: StateMap,
    shutdown_timeout: Duration,
    max_message_size: usize,
    #[cfg(feature = "redis")]
    redis: crate::redis::RedisOptions,
}

impl std::fmt::Debug for EventBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBusBuilder")
            .field("service", &self.service)
            .field("handlers", &self.handlers.len())
            .finish_non_exhaustive()
    }
}

fn handler_name<F>(options: &HandlerOptions) -> String {
    options
        .name
        .clone()
        .unwrap_or_else(|| std::any::type_name::<F>().to_owned())
}

/// Where a handler listens: the topics of its options, or its event's own; checked.
fn resolve_topics(
    spec: &ArgSpec,
    options: &HandlerOptions,
    name: &str,
) -> Result<Vec<Topic>, String> {
    let topics = if options.topics.is_empty() {
        match &spec.topic {
            Some(t) => vec![t.clone()],
            None => {
                return Err(format!(
                    "handler `{name}` takes an untyped envelope or a raw message, so it needs a \
                     topic: register it with `.handler_on(Topic::pattern(\"events:*\"), f)` or \
                     `HandlerOptions::new().topic(..)`"
                ));
            }
        }
    } else {
        options.topics.clone()
    };
    for t in &topics {
        match t {
            Topic::Channel(c) => check_name("channel", c),
            Topic::Pattern(p) if p.is_empty() || p.chars().any(char::is_whitespace) => Err(
                format!("pattern `{p}` must be non-empty and free of whitespace"),
            ),
            Topic::Pattern(_) => Ok(()),
        }
        .map_err(|why| format!("handler `{name}`: {why}"))?;
    }
    Ok(topics)
}

impl EventBusBuilder {
    fn new() -> Self {
        EventBusBuilder {
            service: None,
            handlers: Vec::new(),
            on_error: None,
            on_connection: None,
            state: StateMap::default(),
            shutdown_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            #[cfg(feature = "redis")]
            redis: crate::redis::RedisOptions::default(),
        }
    }

    /// The service name: the `source` of every envelope this bus publishes.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Registers a handler on its event's topic, with default [`HandlerOptions`].
    ///
    /// # Panics
    ///
    /// When the handler takes `Envelope<serde_json::Value>` or [`Message`](crate::Message):
    /// those need a topic, given with [`handler_on`](Self::handler_on).
    #[track_caller]
    pub fn handler<T, H: Handler<T>>(self, handler: H) -> Self {
        self.handler_with(handler, HandlerOptions::new())
    }

    /// Registers a handler on a chosen topic: a pattern, a raw channel, or chosen keys of a
    /// keyed event.
    #[track_caller]
    pub fn handler_on<T, H: Handler<T>>(self, topic: Topic, handler: H) -> Self {
        self.handler_with(handler, HandlerOptions::new().topic(topic))
    }

    /// Registers a handler with options.
    #[track_caller]
    pub fn handler_with<T, H: Handler<T>>(mut self, handler: H, options: HandlerOptions) -> Self {
        let name = handler_name::<H>(&options);
        let spec = handler.spec();
        let topics = match resolve_topics(&spec, &options, &name) {
            Ok(topics) => topics,
            Err(why) => panic!("{why}"),
        };
        self.handlers.push(PendingHandler {
            kind: spec.kind,
            topics,
            handler: handler.into_erased(),
            options,
            name,
        });
        self
    }

    /// Shared state for handlers that take [`State<S>`](crate::State). One value per type.
    pub fn state<S: Clone + Send + Sync + 'static>(mut self, value: S) -> Self {
        self.state.values.insert(
            TypeId::of::<S>(),
            (Box::new(value), std::any::type_name::<S>()),
        );
        self
    }

    /// Called with every [`Failure`]: handler errors, panics and timeouts, undecodable messages,
    /// overflowing queues. Without a hook, failures are logged with `tracing` at warn level.
    /// Called on the bus's own tasks: keep it quick.
    pub fn on_error(mut self, hook: impl Fn(&Failure) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }

    /// Called with every change of connection state (see [`ConnectionEvent`]).
    pub fn on_connection(
        mut self,
        hook: impl Fn(&ConnectionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_connection = Some(Arc::new(hook));
        self
    }

    /// How long [`EventBus::shutdown`] waits for queued and running handlers (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The largest message published or accepted, in bytes (default 1 MiB). Larger incoming
    /// messages are counted, reported and dropped; larger outgoing ones are refused.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Options of the Redis transport: timeouts, reconnect backoff, watchdog.
    #[cfg(feature = "redis")]
    pub fn redis_options(mut self, options: crate::redis::RedisOptions) -> Self {
        self.redis = options;
        self
    }

    /// Connects and starts the handlers.
    ///
    /// `url` picks the transport: `memory://` (a private in-process hub), `memory://NAME` (a hub
    /// shared by every bus of the process that names it), `redis://[user:password@]host:port/db`,
    /// `rediss://...` (TLS) or `redis+unix:///path/to/socket`.
    pub async fn connect(self, url: &str) -> Result<EventBus, ConnectError> {
        let ids: Vec<TypeId> = self.state.values.keys().copied().collect();
        for h in &self.handlers {
            h.handler.check(&StateMapView(&ids)).map_err(|why| {
                ConnectError::new(ErrorKind::Config, format!("handler `{}`: {why}", h.name))
            })?;
        }
        let dispatcher = Arc::new(Dispatcher::new(
            self.on_error,
            self.on_connection,
            self.max_message_size,
        ));
        let inbound: Arc<dyn Inbound> = dispatcher.clone();
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        let transport: Arc<dyn Transport> = match scheme {
            "memory" => Arc::new(MemoryTransport::connect(url, inbound)?),
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" | "unix" => {
                crate::redis::connect(url, inbound, &self.redis).await?
            }
            #[cfg(not(feature = "redis"))]
            "redis" | "rediss" | "redis+unix" | "unix" => {
                return Err(ConnectError::new(
                    ErrorKind::InvalidUrl,
                    "this build of eventbus has no Redis transport: enable the `redis` feature",
                ));
            }
            _ => {
                return Err(ConnectError::new(
                    ErrorKind::InvalidUrl,
                    format!(
                        "unsupported URL `{}`: expected memory://, redis://, rediss:// or redis+unix://",
                        crate::transport::redact_url(url)
                    ),
                ));
            }
        };
        let _ = dispatcher.transport.set(Arc::downgrade(&transport));
        let inner = Arc::new(BusInner {
            service: self.service.unwrap_or_else(|| "eventbus".to_owned()),
            transport,
            dispatcher,
            state: Arc::new(self.state),
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            shutdown_timeout: self.shutdown_timeout,
            max_message_size: self.max_message_size,
            next_id: AtomicU64::new(1),
            sub_lock: tokio::sync::Mutex::new(()),
        });
        let bus = EventBus { inner };
        let mut topics = Vec::new();
        for h in self.handlers {
            let (_, fresh) = bus.register(h);
            topics.extend(fresh);
        }
        if !topics.is_empty() {
            bus.inner.transport.subscribe(&topics).await?;
        }
        Ok(bus)
    }
}

impl EventBus {
    /// Starts setting up a bus.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::new()
    }

    pub(crate) fn from_inner(inner: Arc<BusInner>) -> Self {
        EventBus { inner }
    }

    fn register(&self, h: PendingHandler) -> (Arc<Slot>, Vec<Topic>) {
        let inner = &self.inner;
        let slot = Arc::new(Slot::new(
            inner.next_id.fetch_add(1, Ordering::Relaxed),
            Arc::from(h.name),
            h.topics,
            h.kind,
            h.handler,
            h.options,
            inner.cancel.child_token(),
        ));
        let fresh = inner.dispatcher.add(slot.clone());
        let ctx = HandlerContext {
            bus: Arc::downgrade(&self.inner),
            state: inner.state.clone(),
        };
        dispatch::spawn_worker(&inner.dispatcher, slot.clone(), ctx);
        (slot, fresh)
    }

    /// The service name, written as `source` into published envelopes.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Publishes an event on its channel.
    ///
    /// Dropping the returned future after the command was written (in a `select!`, say) may
    /// still deliver the event: only the receipt is lost.
    pub async fn publish<E: Event>(&self, event: E) -> Result<PublishReceipt, PublishError> {
        self.publish_envelope(Envelope::new(event)).await
    }

    /// Publishes an event with extra attributes, such as those of the event that caused it:
    ///
    /// ```
    /// # use eventbus::{Envelope, Event, EventBus, PublishOptions};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, Event)] struct OrderPlaced { order_id: u64 }
    /// # #[derive(Serialize, Deserialize, Event)] struct InvoiceSent { order_id: u64 }
    /// async fn invoice(order: Envelope<OrderPlaced>, bus: EventBus) -> anyhow::Result<()> {
    ///     let follow_up = InvoiceSent { order_id: order.data().order_id };
    ///     bus.publish_with(follow_up, PublishOptions::caused_by(&order)).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn publish_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<PublishReceipt, PublishError> {
        let mut envelope = Envelope::new(event);
        envelope.correlationid = options.correlation_id;
        envelope.causationid = options.causation_id;
        envelope.traceparent = options.traceparent;
        self.publish_envelope(envelope).await
    }

    /// Publishes a prepared envelope (its source is this bus's service when empty).
    pub async fn publish_envelope<E: Event>(
        &self,
        mut envelope: Envelope<E>,
    ) -> Result<PublishReceipt, PublishError> {
        if envelope.source.is_empty() {
            envelope.source = self.inner.service.clone();
        }
        crate::observe::inherit(&mut envelope);
        let channel = envelope.data().channel();
        let span = tracing::info_span!(
            "eventbus.publish",
            otel.name = %format_args!("publish {channel}"),
            messaging.system = "redis",
            messaging.operation.type = "publish",
            messaging.destination.name = %channel,
            messaging.message.id = %envelope.id(),
            eventbus.event_type = E::TYPE,
            messaging.message.conversation_id = envelope.correlation_id(),
            eventbus.traceparent = envelope.traceparent(),
            error.type = tracing::field::Empty,
        );
        let result: Result<PublishReceipt, PublishError> = async {
            let bytes = envelope.encode().map_err(|e| {
                PublishError::new(
                    ErrorKind::Encode,
                    format!("could not encode `{}`: {e}", E::TYPE),
                )
                .with_source(e)
            })?;
            let receivers = self.send(&channel, Bytes::from(bytes)).await?;
            self.inner
                .dispatcher
                .stats
                .of_type(E::TYPE)
                .published
                .fetch_add(1, Ordering::Relaxed);
            Ok(PublishReceipt {
                id: envelope.id().to_owned(),
                channel: channel.to_string(),
                receivers,
            })
        }
        .instrument(span.clone())
        .await;
        if let Err(e) = &result {
            span.record("error.type", tracing::field::debug(e.kind()));
            span.in_scope(|| tracing::debug!(error = %e, "publish failed"));
        }
        result
    }

    /// Publishes a payload as it is, with no envelope, for subscribers that expect plain text.
    pub async fn publish_raw(
        &self,
        channel: &str,
        payload: impl Into<Bytes>,
    ) -> Result<u64, PublishError> {
        check_name("channel", channel).map_err(|why| PublishError::new(ErrorKind::Config, why))?;
        self.send(channel, payload.into()).await
    }

    async fn send(&self, channel: &str, payload: Bytes) -> Result<u64, PublishError> {
        let stats = &self.inner.dispatcher.stats;
        if self.inner.closed.load(Ordering::Acquire) {
            stats.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(PublishError::new(
                ErrorKind::Closed,
                "the bus has been shut down",
            ));
        }
        if payload.len() > self.inner.max_message_size {
            stats.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(PublishError::new(
                ErrorKind::TooLarge,
                format!(
                    "message of {} bytes exceeds the maximum of {} bytes",
                    payload.len(),
                    self.inner.max_message_size
                ),
            ));
        }
        let started = Instant::now();
        match self.inner.transport.publish(channel, payload).await {
            Ok(n) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
                stats.publish_latency.record(started.elapsed());
                Ok(n)
            }
            Err(e) => {
                stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Registers a handler after start-up; it receives events until the returned
    /// [`Subscription`] is ended or dropped.
    pub async fn subscribe<T, H: Handler<T>>(
        &self,
        handler: H,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_with(handler, HandlerOptions::new()).await
    }

    /// [`subscribe`](Self::subscribe) with options (topic, queue, timeout, retries).
    pub async fn subscribe_with<T, H: Handler<T>>(
        &self,
        handler: H,
        options: HandlerOptions,
    ) -> Result<Subscription, SubscribeError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubscribeError::new(
                ErrorKind::Closed,
                "the bus has been shut down",
            ));
        }
        let name = handler_name::<H>(&options);
        let spec = handler.spec();
        let topics = resolve_topics(&spec, &options, &name)
            .map_err(|why| SubscribeError::new(ErrorKind::Config, why))?;
        let erased = handler.into_erased();
        let ids: Vec<TypeId> = self.inner.state.values.keys().copied().collect();
        erased.check(&StateMapView(&ids)).map_err(|why| {
            SubscribeError::new(ErrorKind::Config, format!("handler `{name}`: {why}"))
        })?;
        let _ordered = self.inner.sub_lock.lock().await;
        let (slot, fresh) = self.register(PendingHandler {
            kind: spec.kind,
            topics,
            handler: erased,
            options,
            name,
        });
        let mut sub = Subscription {
            bus: Arc::downgrade(&self.inner),
            id: slot.id,
            topics: slot.topics.clone(),
            active: true,
        };
        if self.inner.closed.load(Ordering::Acquire) {
            // Shutdown began meanwhile and will not wait for this handler.
            drop(_ordered);
            sub.end_now();
            return Err(SubscribeError::new(
                ErrorKind::Closed,
                "the bus has been shut down",
            ));
        }
        if !fresh.is_empty()
            && let Err(e) = self.inner.transport.subscribe(&fresh).await
        {
            drop(_ordered);
            sub.end_now();
            return Err(e.into());
        }
        Ok(sub)
    }

    /// A pull-style stream of the events of type `E`, for code that prefers a loop to a
    /// handler. It holds up to 8192 undelivered events (the default queue capacity); ends with the bus or when dropped.
    ///
    /// ```
    /// # use eventbus::{Event, EventBus};
    /// # use futures_util::StreamExt;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Event)] struct Tick { n: u32 }
    /// # async fn run(bus: EventBus) -> anyhow::Result<()> {
    /// let mut ticks = bus.stream::<Tick>().await?;
    /// bus.publish(Tick { n: 1 }).await?;
    /// let next = tokio::time::timeout(std::time::Duration::from_secs(1), ticks.next()).await;
    /// # Ok(()) }
    /// ```
    pub async fn stream<E: Event>(&self) -> Result<EventStream<E>, SubscribeError> {
        self.stream_with(HandlerOptions::new()).await
    }

    /// [`stream`](Self::stream) with options (topic, buffer size, overflow policy).
    pub async fn stream_with<E: Event>(
        &self,
        options: HandlerOptions,
    ) -> Result<EventStream<E>, SubscribeError> {
        let (tx, rx) = mpsc::channel::<Envelope<E>>(1);
        let options = if options.name.is_none() {
            options.name(format!("stream<{}>", E::TYPE))
        } else {
            options
        }
        .no_timeout();
        let forward = move |envelope: Envelope<E>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(envelope).await;
            }
        };
        let subscription = self.subscribe_with(forward, options).await?;
        Ok(EventStream {
            rx,
            _subscription: subscription,
        })
    }

    /// A snapshot of the counters: published, received, handled, failed, dropped, latency.
    pub fn metrics(&self) -> Metrics {
        let handlers = self
            .inner
            .dispatcher
            .slots()
            .iter()
            .map(|s| s.stats.snapshot(&s.name, &s.event_type, s.queue.len()))
            .collect();
        self.inner.dispatcher.stats.snapshot(handlers)
    }

    /// Connection state changes from now on (see also
    /// [`EventBusBuilder::on_connection`]).
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.dispatcher.connection_tx.subscribe()
    }

    /// The topics this bus holds subscriptions for.
    pub fn topics(&self) -> Vec<Topic> {
        self.inner.dispatcher.topics()
    }

    /// Checks the server answers; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, SubscribeError> {
        Ok(self.inner.transport.ping().await?)
    }

    /// Active channels on the server, optionally matching a glob (`PUBSUB CHANNELS`).
    pub async fn channels(&self, pattern: Option<&str>) -> Result<Vec<String>, SubscribeError> {
        Ok(self.inner.transport.channels(pattern).await?)
    }

    /// Subscriber counts of channels (`PUBSUB NUMSUB`).
    pub async fn numsub(
        &self,
        channels: &[impl AsRef<str>],
    ) -> Result<Vec<(String, u64)>, SubscribeError> {
        let channels: Vec<String> = channels.iter().map(|c| c.as_ref().to_owned()).collect();
        Ok(self.inner.transport.numsub(&channels).await?)
    }

    /// The number of pattern subscriptions on the server (`PUBSUB NUMPAT`).
    pub async fn numpat(&self) -> Result<u64, SubscribeError> {
        Ok(self.inner.transport.numpat().await?)
    }

    /// Dead letters of an event type, oldest first.
    pub async fn dead_letters(
        &self,
        event_type: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, SubscribeError> {
        Ok(self.inner.transport.dead_letters(event_type, limit).await?)
    }

    /// Publishes a dead letter's original message again on its channel, then removes it from
    /// the store. Returns how many subscribers received it.
    pub async fn replay_dead_letter(&self, letter: &DeadLetter) -> Result<u64, PublishError> {
        let n = self.send(&letter.channel, letter.payload.clone()).await?;
        self.inner
            .transport
            .remove_dead_letter(&letter.event_type, &letter.entry_id)
            .await?;
        Ok(n)
    }

    /// Stops intake, lets queued and running handlers finish until the shutdown timeout, then
    /// drops what is left and says how much that was.
    ///
    /// Returns an error carrying the [`ShutdownReport`] when events were left unprocessed.
    /// Publishing after shutdown fails with [`ErrorKind::Closed`]. Calling it again returns an
    /// empty report.
    pub async fn shutdown(&self) -> Result<ShutdownReport, ShutdownError> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(ShutdownReport::default());
        }
        let handled = |slots: &[Arc<Slot>]| -> u64 {
            slots
                .iter()
                .map(|s| {
                    s.stats.handled.load(Ordering::Relaxed) + s.stats.failed.load(Ordering::Relaxed)
                })
                .sum()
        };
        let before = handled(&inner.dispatcher.slots());
        match tokio::time::timeout(Duration::from_secs(5), inner.transport.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "closing the transport failed"),
            Err(_) => tracing::warn!("closing the transport took more than 5s; moving on"),
        }
        // Wait for subscription changes under way, so every handler is in the list below.
        drop(inner.sub_lock.lock().await);
        let slots = inner.dispatcher.slots();
        for slot in &slots {
            dispatch::close_slot(slot);
        }
        let tracker = &inner.dispatcher.tracker;
        tracker.close();
        let mut report = ShutdownReport::default();
        if tokio::time::timeout(inner.shutdown_timeout, tracker.wait())
            .await
            .is_err()
        {
            let mut left = 0u64;
            for slot in &slots {
                let running = slot.stats.in_flight.load(Ordering::Relaxed);
                left += dispatch::abandon_slot(slot) as u64 + running;
            }
            inner.cancel.cancel();
            report.unprocessed = left;
        }
        report.drained = handled(&slots).saturating_sub(before);
        if report.unprocessed > 0 {
            tracing::warn!(
                unprocessed = report.unprocessed,
                "shutdown left events unprocessed"
            );
            Err(ShutdownError { report })
        } else {
            Ok(report)
        }
    }

    /// Runs until `signal` completes, then shuts down. With [`shutdown_signal`] a service stops
    /// cleanly on Ctrl-C or SIGTERM:
    ///
    /// ```no_run
    /// # async fn run(bus: eventbus::EventBus) -> anyhow::Result<()> {
    /// bus.run_until(eventbus::shutdown_signal()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(
        &self,
        signal: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ShutdownError> {
        signal.await;
        self.shutdown().await
    }
}

/// Completes on Ctrl-C, or on SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A handler registered after start-up. Ends on [`unsubscribe`](Self::unsubscribe) or drop:
/// no new events reach the handler; what is already queued still runs.
#[derive(Debug)]
#[must_use = "dropping a Subscription ends it at once"]
pub struct Subscription {
    bus: Weak<BusInner>,
    id: u64,
    topics: Vec<Topic>,
    active: bool,
}

impl Subscription {
    /// The topics it listens on.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// Ends the subscription, unsubscribing topics no other handler holds.
    ///
    /// The server is told first, so events it sent before the unsubscribe still reach the
    /// handler; dropping the subscription instead ends it at once, and events already on
    /// their way are dropped (counted as `unrouted` in the metrics).
    pub async fn unsubscribe(mut self) -> Result<(), SubscribeError> {
        let Some(inner) = self.bus.upgrade() else {
            self.active = false;
            return Ok(());
        };
        let ordered = inner.sub_lock.lock().await;
        let last = inner.dispatcher.topics_held_only_by(self.id);
        // If this future is dropped during the await, `Drop` still removes the handler.
        let told = if !last.is_empty() && !inner.closed.load(Ordering::Acquire) {
            inner.transport.unsubscribe(&last).await
        } else {
            Ok(())
        };
        self.active = false;
        let gone = remove_slot(&inner, self.id);
        let rest: Vec<Topic> = gone.into_iter().filter(|t| !last.contains(t)).collect();
        let result = if !rest.is_empty() && !inner.closed.load(Ordering::Acquire) {
            told.and(inner.transport.unsubscribe(&rest).await)
        } else {
            told
        };
        drop(ordered);
        Ok(result?)
    }

    fn end_now(&mut self) {
        if !std::mem::replace(&mut self.active, false) {
            return;
        }
        let Some(inner) = self.bus.upgrade() else {
            return;
        };
        let gone = remove_slot(&inner, self.id);
        if gone.is_empty() || inner.closed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ordered = inner.sub_lock.lock().await;
                // A newer handler may hold a topic again by now: leave those subscribed.
                let held = inner.dispatcher.topics();
                let gone: Vec<Topic> = gone.into_iter().filter(|t| !held.contains(t)).collect();
                if gone.is_empty() || inner.closed.load(Ordering::Acquire) {
                    return;
                }
                if let Err(e) = inner.transport.unsubscribe(&gone).await {
                    tracing::warn!(error = %e, "unsubscribing a dropped subscription failed");
                }
            });
        }
    }
}

fn remove_slot(inner: &BusInner, id: u64) -> Vec<Topic> {
    let (slot, gone) = inner.dispatcher.remove(id);
    if let Some(slot) = slot {
        dispatch::close_slot(&slot);
    }
    gone
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.end_now();
    }
}

/// A stream of typed events: see [`EventBus::stream`].
#[derive(Debug)]
pub struct EventStream<E> {
    rx: mpsc::Receiver<Envelope<E>>,
    _subscription: Subscription,
}

impl<E> EventStream<E> {
    /// Ends the stream and its subscription.
    pub async fn unsubscribe(self) -> Result<(), SubscribeError> {
        self._subscription.unsubscribe().await
    }
}

impl<E> futures_util::Stream for EventStream<E> {
    type Item = Envelope<E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
