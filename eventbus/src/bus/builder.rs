//! Setting up a bus: service name, handlers, hooks, options, then a transport.

use std::any::TypeId;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BusInner, DEFAULT_MAX_MESSAGE_SIZE, EventBus, Phase};
use crate::Topic;
use crate::asyncapi::Described;
use crate::error::{ConnectError, ConnectErrorKind, Failure};
use crate::event::{Event, check_name};
use crate::handler::{ArgKind, ArgSpec, Handler, StateMap, StateMapView};
use crate::metrics::BusStats;
use crate::options::HandlerOptions;
use crate::runtime::{ConnectionHook, ErrorHook, Hooks, Router, Runtime, SlotSpec};
use crate::transport::{ConnectionEvent, Inbound, Transport, TransportError};

/// Sets up an [`EventBus`]: service name, handlers, hooks, then [`connect`](Self::connect).
#[must_use = "a builder does nothing until `.connect(url).await`"]
pub struct EventBusBuilder {
    service: Option<String>,
    handlers: Vec<SlotSpec>,
    sends: Vec<Described>,
    /// Set-up mistakes, each with where it was made: `connect` returns them.
    mistakes: Vec<String>,
    on_error: Option<ErrorHook>,
    on_connection: Option<ConnectionHook>,
    state: StateMap,
    shutdown_timeout: Duration,
    max_message_size: usize,
    #[cfg(feature = "redis")]
    redis: crate::redis::RedisOptions,
    #[cfg(feature = "postgres")]
    outbox: Option<crate::postgres::Outbox>,
    #[cfg(feature = "postgres")]
    inbox: Option<crate::postgres::Inbox>,
}

impl std::fmt::Debug for EventBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBusBuilder")
            .field("service", &self.service)
            .field("handlers", &self.handlers.len())
            .finish_non_exhaustive()
    }
}

/// A handler's name: the one in its options, else its fn path. A closure is named after the
/// fn it was written in and the event it takes (`app::main::{closure}(user_created)`).
pub(super) fn handler_name<F>(options: &HandlerOptions, spec: &ArgSpec) -> String {
    if let Some(name) = &options.name {
        return name.clone();
    }
    let full = std::any::type_name::<F>();
    match full.find("::{{closure}}") {
        Some(at) => {
            let event = match spec.kind {
                ArgKind::Envelope { event_type, .. } => event_type,
                ArgKind::Raw => "message",
            };
            format!("{}::{{closure}}({event})", &full[..at])
        }
        None => full.to_owned(),
    }
}

/// Where a handler listens: the topics of its options, or its event's own; checked.
pub(super) fn resolve_topics(
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

/// A handler made ready to register: named, its topics resolved and checked.
pub(super) fn slot_spec<T, H: Handler<T>>(
    handler: H,
    options: HandlerOptions,
) -> Result<SlotSpec, String> {
    let spec = handler.spec();
    let name = handler_name::<H>(&options, &spec);
    options
        .validate()
        .map_err(|why| format!("handler `{name}`: {why}"))?;
    let topics = resolve_topics(&spec, &options, &name)?;
    let durable = matches!(spec.kind, ArgKind::Envelope { durable: true, .. });
    if options.durable.dedupe.is_some() && !durable {
        return Err(format!(
            "handler `{name}`: `dedupe` applies to durable event types (`#[event(durable)]`), \
             whose redeliveries it skips; this handler takes pub/sub events"
        ));
    }
    if !options.retry.delayed_retries().is_empty() && !durable {
        return Err(format!(
            "handler `{name}`: delayed retries (RetryPolicy::then_delayed) apply to durable \
             event types, whose entries come back later to their group; this handler takes \
             pub/sub events, which are not durable (retry them at once, with \
             RetryPolicy::attempts and backoff)"
        ));
    }
    Ok(SlotSpec {
        name,
        topics,
        kind: spec.kind,
        handler: handler.into_erased(),
        options,
    })
}

/// Checks that every extra argument of a handler can be made from the state given, and that
/// a handler taking a `Tx` takes one, on a bus with an inbox.
pub(super) fn check_state(spec: &SlotSpec, state: &StateMap, inbox: bool) -> Result<(), String> {
    match spec.handler.transactions() {
        0 => {}
        1 if inbox => {}
        1 => {
            return Err(format!(
                "handler `{}` takes a Tx, which needs an inbox: give the builder \
                 `.inbox(Inbox::postgres(pool))`",
                spec.name
            ));
        }
        _ => return Err(format!("handler `{}` takes more than one Tx", spec.name)),
    }
    let ids: Vec<TypeId> = state.values.keys().copied().collect();
    spec.handler
        .check(&StateMapView(&ids))
        .map_err(|why| format!("handler `{}`: {why}", spec.name))
}

impl EventBusBuilder {
    pub(super) fn new() -> Self {
        EventBusBuilder {
            service: None,
            handlers: Vec::new(),
            sends: Vec::new(),
            mistakes: Vec::new(),
            on_error: None,
            on_connection: None,
            state: StateMap::default(),
            shutdown_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            #[cfg(feature = "redis")]
            redis: crate::redis::RedisOptions::default(),
            #[cfg(feature = "postgres")]
            outbox: None,
            #[cfg(feature = "postgres")]
            inbox: None,
        }
    }

    /// A transactional outbox on PostgreSQL: publish into it with
    /// [`EventBus::outbox`](crate::EventBus::outbox) inside your transaction; this bus runs a
    /// relay that takes committed rows to Redis (one relay is active per outbox, across every
    /// instance). Its tables are created at connect unless told otherwise.
    #[cfg(feature = "postgres")]
    pub fn outbox(mut self, outbox: crate::postgres::Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// An inbox on PostgreSQL, for handlers that take a [`Tx`](crate::Tx): each run is a
    /// transaction with the `(consumer group, event id)` row in it, committed before the
    /// acknowledgement; an event the group handled already is skipped.
    #[cfg(feature = "postgres")]
    pub fn inbox(mut self, inbox: crate::postgres::Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Whether the bus will have an inbox.
    fn has_inbox(&self) -> bool {
        #[cfg(feature = "postgres")]
        return self.inbox.is_some();
        #[cfg(not(feature = "postgres"))]
        false
    }

    /// The service name: the `source` of every envelope this bus publishes.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Registers a handler on its event's topic, with default [`HandlerOptions`].
    ///
    /// A handler that takes `Envelope<serde_json::Value>` or [`Message`](crate::Message) needs
    /// a topic, given with [`handler_on`](Self::handler_on). Set-up mistakes (a missing topic,
    /// a bad channel name, state nobody provided) never panic: [`connect`](Self::connect)
    /// returns them as one [`ConnectError`] of kind `Config`, each with the line it was made on.
    #[track_caller]
    pub fn handler<T, H: Handler<T>>(self, handler: H) -> Self {
        self.handler_with(HandlerOptions::new(), handler)
    }

    /// Registers a handler on a chosen topic: a pattern, a raw channel, or chosen keys of a
    /// keyed event.
    #[track_caller]
    pub fn handler_on<T, H: Handler<T>>(self, topic: Topic, handler: H) -> Self {
        self.handler_with(HandlerOptions::new().topic(topic), handler)
    }

    /// Registers a handler with options.
    ///
    /// Like every method that registers a handler, it takes where and how the handler listens
    /// first and the handler last, as axum's `route(path, handler)` does:
    /// [`handler_on(topic, f)`](Self::handler_on), `handler_with(options, f)` and
    /// [`EventBus::subscribe_with(options, f)`](EventBus::subscribe_with).
    #[track_caller]
    pub fn handler_with<T, H: Handler<T>>(mut self, options: HandlerOptions, handler: H) -> Self {
        match slot_spec(handler, options) {
            Ok(spec) => self.handlers.push(spec),
            Err(why) => {
                let at = std::panic::Location::caller();
                self.mistakes.push(format!("{why} (registered at {at})"));
            }
        }
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

    /// Declares an event type this service publishes, for its AsyncAPI document
    /// ([`asyncapi`](Self::asyncapi), [`EventBus::asyncapi`]). Publishing needs no declaration.
    pub fn publishes<E: Event>(mut self) -> Self {
        crate::asyncapi::add(&mut self.sends, Described::of::<E>());
        self
    }

    /// The service's AsyncAPI 3.0 document, before connecting: the declared published types
    /// and the typed handlers' types, without a server. See [`EventBus::asyncapi`].
    pub fn asyncapi(&self) -> serde_json::Value {
        self.document(None)
    }

    /// As [`asyncapi`](Self::asyncapi), with the server the bus would connect to at `url`
    /// (its passwords masked), as [`EventBus::asyncapi`] has it once connected. Needs no
    /// server.
    pub fn asyncapi_for(&self, url: &str) -> serde_json::Value {
        self.document(Some(&crate::transport::redact_url(url)))
    }

    fn document(&self, url: Option<&str>) -> serde_json::Value {
        let service = self.service.as_deref().unwrap_or("eventbus");
        let mut receives = Vec::new();
        for spec in &self.handlers {
            let group = super::groups::group_name(service, spec);
            if let Some(d) = Described::handled(&spec.kind, &spec.name, group.as_deref()) {
                crate::asyncapi::add(&mut receives, d);
            }
        }
        crate::asyncapi::document(service, url, &self.sends, &receives)
    }

    /// Adds `hook` after the error hook already set (if any): both are called.
    pub(crate) fn also_on_error(mut self, hook: impl Fn(&Failure) + Send + Sync + 'static) -> Self {
        let first = self.on_error.take();
        self.on_error = Some(Arc::new(move |f: &Failure| {
            if let Some(first) = &first {
                first(f);
            }
            hook(f);
        }));
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

    /// How long [`EventBus::shutdown`] waits for queued and running handlers (default 10 s;
    /// at most a day).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout.min(Duration::from_secs(86_400));
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
    /// `rediss://...` (TLS), `redis+unix:///path/to/socket`, or
    /// `redis+sentinel://[user:password@]host:26379,host:26379/<master>[/db]` (the primary found
    /// through Sentinel, again after every failover; `rediss+sentinel://` for TLS; sentinels
    /// with a password of their own take `?sentinel_password=...`, and
    /// `&sentinel_username=...` for an ACL user), or
    /// `redis+cluster://host:port,host:port/` (a Redis Cluster: sharded pub/sub, streams on
    /// their key's node; `rediss+cluster://` for TLS). Schemes are case-insensitive.
    pub async fn connect(self, url: &str) -> Result<EventBus, ConnectError> {
        let bus = self.connect_url(url).await?;
        let _ = bus.inner.url.set(crate::transport::redact_url(url));
        Ok(bus)
    }

    async fn connect_url(self, url: &str) -> Result<EventBus, ConnectError> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "memory" => {
                let url = format!("memory://{}", &url["memory://".len()..]);
                self.connect_with(move |inbound| async move {
                    crate::transport::memory::connect(&url, inbound)
                })
                .await
            }
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" | "unix" | "redis+sentinel" | "rediss+sentinel"
            | "redis+cluster" | "rediss+cluster" => {
                let options = self.redis.clone();
                let url = url.to_owned();
                self.connect_with(move |inbound| async move {
                    crate::redis::connect(&url, inbound, &options).await
                })
                .await
            }
            #[cfg(not(feature = "redis"))]
            "redis" | "rediss" | "redis+unix" | "unix" | "redis+sentinel" | "rediss+sentinel"
            | "redis+cluster" | "rediss+cluster" => Err(ConnectError::new(
                ConnectErrorKind::InvalidUrl,
                "this build of eventbus has no Redis transport: enable the `redis` feature",
            )),
            _ => Err(ConnectError::new(
                ConnectErrorKind::InvalidUrl,
                format!(
                    "unsupported URL `{}`: expected memory://, redis://, rediss://, redis+unix://, \
                     redis+sentinel:// or redis+cluster://",
                    crate::transport::redact_url(url)
                ),
            )),
        }
    }

    /// Connects through a transport of your own (or a built-in one with options the URL does
    /// not carry): `connect` is called once with the [`Inbound`] sink where the transport
    /// delivers what it receives. See [`transport`](crate::transport) for the contract.
    pub async fn connect_with<F, Fut>(mut self, connect: F) -> Result<EventBus, ConnectError>
    where
        F: FnOnce(Arc<dyn Inbound>) -> Fut,
        Fut: Future<Output = Result<Arc<dyn Transport>, TransportError>>,
    {
        self.check_setup()?;
        let handlers = std::mem::take(&mut self.handlers);
        let hooks = Arc::new(Hooks::new(self.on_error.take(), self.on_connection.take()));
        let stats = Arc::new(BusStats::default());
        let router = Arc::new(Router::new(
            stats.clone(),
            hooks.clone(),
            self.max_message_size,
        ));
        #[cfg(feature = "postgres")]
        let prepared = super::outbox::prepare(
            self.outbox.take(),
            self.inbox.take(),
            self.service
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVICE.to_owned()),
            self.max_message_size,
        )
        .await?;
        let transport = connect(router.clone()).await?;
        let runtime = Arc::new(Runtime {
            hooks,
            transport,
            tracker: TaskTracker::new(),
            #[cfg(feature = "postgres")]
            inbox: prepared.inbox.clone(),
        });
        let bus = self.start(
            router,
            runtime,
            stats,
            #[cfg(feature = "postgres")]
            prepared.outbox,
        );
        #[cfg(feature = "postgres")]
        super::outbox::start(&bus);
        register_handlers(&bus, handlers).await?;
        report_orphans(&bus).await;
        Ok(bus)
    }

    /// The set-up mistakes, those made along the way and handlers' missing state, as one error.
    fn check_setup(&mut self) -> Result<(), ConnectError> {
        let mut mistakes = std::mem::take(&mut self.mistakes);
        mistakes.extend(
            self.handlers
                .iter()
                .filter_map(|h| check_state(h, &self.state, self.has_inbox()).err()),
        );
        #[cfg(feature = "postgres")]
        {
            let outbox = self.outbox.as_ref().map(|o| o.check().map(drop));
            let inbox = self.inbox.as_ref().map(|i| i.check().map(drop));
            mistakes.extend(outbox.into_iter().chain(inbox).filter_map(Result::err));
        }
        let service = self.service.as_deref().unwrap_or(DEFAULT_SERVICE);
        mistakes.extend(super::groups::shared_groups(service, &self.handlers));
        #[cfg(feature = "postgres")]
        mistakes.extend(super::groups::shared_inbox_scopes(service, &self.handlers));
        if mistakes.is_empty() {
            return Ok(());
        }
        Err(ConnectError::new(
            ConnectErrorKind::Config,
            mistakes.join("; "),
        ))
    }

    /// The bus over a connected transport, watching its consumer groups; no handler yet.
    fn start(
        self,
        router: Arc<Router>,
        runtime: Arc<Runtime>,
        stats: Arc<BusStats>,
        #[cfg(feature = "postgres")] outbox: Option<crate::postgres::OutboxState>,
    ) -> EventBus {
        let cancel = CancellationToken::new();
        let tasks = super::tasks::Tasks::default();
        let inner = Arc::new(BusInner {
            service: self.service.unwrap_or_else(|| DEFAULT_SERVICE.to_owned()),
            router,
            runtime,
            stats,
            state: Arc::new(self.state),
            runtime_gone: super::watch_runtime(&tasks),
            cancel,
            tasks,
            phase: AtomicU8::new(Phase::Running as u8),
            shutdown: Default::default(),
            shutdown_timeout: self.shutdown_timeout,
            max_message_size: self.max_message_size,
            next_id: AtomicU64::new(1),
            consumer: super::consumer_name(),
            sub_lock: tokio::sync::Mutex::new(()),
            sends: self.sends,
            orphans: Default::default(),
            url: std::sync::OnceLock::new(),
            #[cfg(feature = "postgres")]
            outbox,
        });
        let bus = EventBus { inner };
        let watch =
            super::group_watch::watch(bus.inner.router.clone(), bus.inner.transport().clone());
        bus.inner.tasks.spawn(None, watch);
        bus
    }
}

/// The service of a bus built without [`service`](EventBusBuilder::service).
const DEFAULT_SERVICE: &str = "eventbus";

/// Finds the groups of the service on its durable streams that no handler reads but that hold
/// entries, and reports each loudly: to the error hook, in the log, in `health()` and the
/// metrics.
async fn report_orphans(bus: &EventBus) {
    let slots = bus.inner.router.slots();
    let streams: Vec<(&str, &str)> = slots
        .iter()
        .filter_map(|s| super::group_watch::group_of(s))
        .collect();
    if streams.is_empty() {
        return;
    }
    let transport = bus.inner.transport();
    let found = super::groups::orphans(&**transport, &bus.inner.service, &streams).await;
    for orphan in &found {
        tracing::error!(stream = %orphan.stream, group = %orphan.group, "{orphan}");
        bus.inner
            .runtime
            .hooks
            .report(Failure::OrphanedGroup(orphan.clone()));
    }
    *crate::sync::lock(&bus.inner.orphans) = found;
}

/// Registers the builder's handlers on `bus`, subscribes to their topics, and joins the consumer
/// groups of the durable ones.
async fn register_handlers(bus: &EventBus, handlers: Vec<SlotSpec>) -> Result<(), TransportError> {
    let mut topics = Vec::new();
    let mut durable = Vec::new();
    for spec in handlers {
        let (slot, fresh) = bus.register(spec, true);
        topics.extend(fresh);
        durable.extend(slot.group.is_some().then_some(slot));
    }
    if !topics.is_empty() {
        bus.inner.transport().subscribe(&topics).await?;
    }
    for slot in &durable {
        bus.join(slot).await?;
    }
    Ok(())
}
