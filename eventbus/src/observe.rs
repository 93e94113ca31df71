//! Observability: the trace context that travels with events, and, with the `metrics`
//! feature, the bus's counters exported through the [`metrics`](https://docs.rs/metrics)
//! facade.
//!
//! # Trace context
//!
//! Every envelope may carry a W3C `traceparent` (and a correlation and a causation id). While a
//! handler runs, the event it is running for is its [`EventContext`], and a publish from inside
//! the handler takes what it does not set itself from it, so that a chain of events stays one
//! trace and one correlation:
//!
//! - `traceparent`, unless the publish sets one: the handled event's, when it is a valid W3C
//!   trace context (it is passed on as it is: this crate makes no spans of its own);
//! - `correlationid` and `causationid`, unless the publish sets either: the handled event's
//!   correlation id (or its id when it has none), and its id, as
//!   [`PublishOptions::caused_by`](crate::PublishOptions::caused_by) would.
//!
//! The context lives in a task-local: work the handler hands to a task of its own
//! (`tokio::spawn`) takes it along with [`EventContext::scope`]:
//!
//! ```
//! # use eventbus::{EventBus, EventContext};
//! # async fn follow_up(bus: EventBus) {}
//! async fn handler(_: eventbus::Envelope<serde_json::Value>, bus: EventBus) {
//!     if let Some(ctx) = EventContext::current() {
//!         tokio::spawn(ctx.scope(follow_up(bus)));
//!     }
//! }
//! ```
//!
//! The `eventbus.publish` and `eventbus.handle` spans carry the ids as fields
//! (`messaging.message.id`, `messaging.message.conversation_id` for the correlation id,
//! `eventbus.traceparent`), and `error.type` when publishing or a handler attempt failed.
//!
//! # Metrics
//!
//! With the `metrics` feature, `export_metrics` starts a task that publishes the bus's
//! counters to whatever recorder the application installed (Prometheus, StatsD, ...). The
//! bus keeps counting in its own atomics either way; the export reads
//! [`EventBus::metrics`](crate::EventBus::metrics) snapshots and records what changed since the
//! previous one, so handlers pay nothing for it. See `MetricsExporter` for the names.

use std::future::Future;
use std::sync::Arc;

use crate::envelope::{Envelope, RawEnvelope};

tokio::task_local! {
    static CURRENT: Option<EventContext>;
}

/// The event a handler is running for: its id, correlation id and trace context, which a
/// publish from inside the handler inherits (see the [module docs](self)).
///
/// Cheap to clone: it shares the received envelope's attributes.
#[derive(Clone)]
pub struct EventContext {
    raw: Arc<RawEnvelope>,
}

impl std::fmt::Debug for EventContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventContext")
            .field("id", &self.id())
            .field("event_type", &self.event_type())
            .field("correlation_id", &self.correlation_id())
            .field("traceparent", &self.traceparent())
            .finish()
    }
}

impl EventContext {
    /// The context of the handler run this task belongs to; `None` outside handlers (and in
    /// handlers of raw messages that are not envelopes).
    pub fn current() -> Option<EventContext> {
        CURRENT.try_with(Clone::clone).ok().flatten()
    }

    /// The id of the event being handled.
    pub fn id(&self) -> &str {
        self.raw.id()
    }

    /// Its type.
    pub fn event_type(&self) -> &str {
        self.raw.event_type()
    }

    /// Its correlation id, as sent.
    pub fn correlation_id(&self) -> Option<&str> {
        self.raw.header().correlation_id()
    }

    /// Its causation id, as sent.
    pub fn causation_id(&self) -> Option<&str> {
        self.raw.header().causation_id()
    }

    /// Its `traceparent`, when it is a valid W3C trace context (anything else is ignored).
    pub fn traceparent(&self) -> Option<&str> {
        self.raw
            .header()
            .traceparent()
            .filter(|t| is_valid_traceparent(t))
    }

    /// The correlation id a follow-up carries: this event's correlation id, or its id.
    pub fn follow_up_correlation_id(&self) -> &str {
        self.correlation_id().unwrap_or_else(|| self.id())
    }

    /// Runs `fut` with this context as the current one, for work a handler moves to another
    /// task: publishes inside it inherit the context as they would in the handler.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(Some(self), fut)
    }
}

/// Runs a handler attempt with the delivery's envelope (if any) as the current context.
pub(crate) fn in_context<F: Future>(
    raw: Option<&Arc<RawEnvelope>>,
    fut: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(raw.map(|raw| EventContext { raw: raw.clone() }), fut)
}

/// Fills the trace context, correlation and causation of an envelope published from inside a
/// handler from the event being handled, where the publisher set none of them.
pub(crate) fn inherit<E>(envelope: &mut Envelope<E>) {
    let _ = CURRENT.try_with(|ctx| {
        let Some(ctx) = ctx else { return };
        if envelope.traceparent.is_none() {
            envelope.traceparent = ctx.traceparent().map(str::to_owned);
        }
        if envelope.correlationid.is_none() && envelope.causationid.is_none() {
            envelope.correlationid = Some(ctx.follow_up_correlation_id().to_owned());
            envelope.causationid = Some(ctx.id().to_owned());
        }
    });
}

/// Whether `value` is a W3C `traceparent` this crate propagates: version `00` in its exact
/// form (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids not all
/// zero), or a later version that starts the same way (later versions may append fields after
/// a `-`; version `ff` is invalid).
///
/// ```
/// use eventbus::observe::is_valid_traceparent;
/// assert!(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("not a trace"));
/// ```
pub fn is_valid_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    let hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let nonzero = |s: &[u8]| s.iter().any(|c| *c != b'0');
    if b.len() < 55 || !hex(&b[..2]) || &b[..2] == b"ff" {
        return false;
    }
    let (trace, parent, flags) = (&b[3..35], &b[36..52], &b[53..55]);
    let shape = b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
    let tail_ok = if &b[..2] == b"00" {
        b.len() == 55
    } else {
        b.len() == 55 || b[55] == b'-'
    };
    shape && tail_ok && hex(trace) && hex(parent) && hex(flags) && nonzero(trace) && nonzero(parent)
}

#[cfg(feature = "metrics")]
pub use export::{MetricsExport, MetricsExporter, export_metrics, export_metrics_with};

#[cfg(feature = "metrics")]
mod export {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use metrics::{Label, SharedString, Unit};
    use tokio_util::sync::{CancellationToken, DropGuard};

    use crate::EventBus;
    use crate::metrics::{LatencyBuckets, Metrics};

    /// The metric names, with their kind, unit and description.
    const DESCRIPTIONS: &[(&str, Kind, Unit, &str)] = &[
        (
            "eventbus_published_total",
            Kind::Counter,
            Unit::Count,
            "Events published by this bus, per event type.",
        ),
        (
            "eventbus_publish_errors_total",
            Kind::Counter,
            Unit::Count,
            "Publishes that failed.",
        ),
        (
            "eventbus_publish_duration_seconds",
            Kind::Histogram,
            Unit::Seconds,
            "Time from publish to the transport's answer (power-of-two bucket upper bounds).",
        ),
        (
            "eventbus_messages_received_total",
            Kind::Counter,
            Unit::Count,
            "Messages received from the transport, envelopes or not.",
        ),
        (
            "eventbus_received_total",
            Kind::Counter,
            Unit::Count,
            "Envelopes received, per event type.",
        ),
        (
            "eventbus_decode_errors_total",
            Kind::Counter,
            Unit::Count,
            "Messages that could not be decoded (bad envelopes and bad data).",
        ),
        (
            "eventbus_unrouted_total",
            Kind::Counter,
            Unit::Count,
            "Messages that arrived for a topic no handler holds any more.",
        ),
        (
            "eventbus_reconnects_total",
            Kind::Counter,
            Unit::Count,
            "Reconnections of the transport's connections.",
        ),
        (
            "eventbus_handler_received_total",
            Kind::Counter,
            Unit::Count,
            "Events queued for a handler.",
        ),
        (
            "eventbus_handled_total",
            Kind::Counter,
            Unit::Count,
            "Handler runs that succeeded.",
        ),
        (
            "eventbus_failed_total",
            Kind::Counter,
            Unit::Count,
            "Events that failed their last attempt (errors, panics and timeouts).",
        ),
        (
            "eventbus_panicked_total",
            Kind::Counter,
            Unit::Count,
            "Handler attempts that panicked.",
        ),
        (
            "eventbus_timed_out_total",
            Kind::Counter,
            Unit::Count,
            "Handler attempts that ran past their timeout.",
        ),
        (
            "eventbus_retried_total",
            Kind::Counter,
            Unit::Count,
            "Handler attempts that were retried.",
        ),
        (
            "eventbus_dead_lettered_total",
            Kind::Counter,
            Unit::Count,
            "Events stored as dead letters.",
        ),
        (
            "eventbus_dropped_total",
            Kind::Counter,
            Unit::Count,
            "Events dropped because a handler's queue was full.",
        ),
        (
            "eventbus_handler_decode_errors_total",
            Kind::Counter,
            Unit::Count,
            "Messages that could not be decoded into a handler's argument type.",
        ),
        (
            "eventbus_queue_depth",
            Kind::Gauge,
            Unit::Count,
            "Events waiting in a handler's queue.",
        ),
        (
            "eventbus_in_flight",
            Kind::Gauge,
            Unit::Count,
            "Handler runs in progress.",
        ),
        (
            "eventbus_handler_duration_seconds",
            Kind::Histogram,
            Unit::Seconds,
            "Duration of successful handler runs (power-of-two bucket upper bounds).",
        ),
    ];

    #[derive(Clone, Copy)]
    enum Kind {
        Counter,
        Gauge,
        Histogram,
    }

    type Series = (&'static str, Vec<Label>);

    /// Records [`Metrics`] snapshots through the `metrics` facade, as the change since the
    /// previous snapshot it recorded.
    ///
    /// [`export_metrics`] runs one on a timer; use one directly to export at moments of your
    /// choosing (before a scrape, at shutdown). Every metric carries the labels given with
    /// [`label`](Self::label); per-handler metrics add `handler` and `event_type`, per-type
    /// ones `event_type`.
    ///
    /// | metric | kind | labels |
    /// |---|---|---|
    /// | `eventbus_published_total` | counter | `event_type` |
    /// | `eventbus_publish_errors_total` | counter | |
    /// | `eventbus_publish_duration_seconds` | histogram | |
    /// | `eventbus_messages_received_total` | counter | |
    /// | `eventbus_received_total` | counter | `event_type` |
    /// | `eventbus_decode_errors_total` | counter | |
    /// | `eventbus_unrouted_total` | counter | |
    /// | `eventbus_reconnects_total` | counter | |
    /// | `eventbus_handler_received_total` | counter | `handler`, `event_type` |
    /// | `eventbus_handled_total` | counter | `handler`, `event_type` |
    /// | `eventbus_failed_total` | counter | `handler`, `event_type` |
    /// | `eventbus_panicked_total` | counter | `handler`, `event_type` |
    /// | `eventbus_timed_out_total` | counter | `handler`, `event_type` |
    /// | `eventbus_retried_total` | counter | `handler`, `event_type` |
    /// | `eventbus_dead_lettered_total` | counter | `handler`, `event_type` |
    /// | `eventbus_dropped_total` | counter | `handler`, `event_type` |
    /// | `eventbus_handler_decode_errors_total` | counter | `handler`, `event_type` |
    /// | `eventbus_queue_depth` | gauge | `handler`, `event_type` |
    /// | `eventbus_in_flight` | gauge | `handler`, `event_type` |
    /// | `eventbus_handler_duration_seconds` | histogram | `handler`, `event_type` |
    ///
    /// The bus times runs in power-of-two microsecond buckets; each run is recorded into the
    /// histograms as its bucket's upper bound, so values are within a factor of two, as in
    /// [`LatencySnapshot`](crate::LatencySnapshot). Handlers that share a name and an event
    /// type are added together. A counter that went down (a handler removed and registered
    /// again) starts over from its new value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let bus = eventbus::EventBus::builder().connect("memory://").await?;
    /// let mut exporter = eventbus::observe::MetricsExporter::new().label("service", "accounts");
    /// exporter.record(&bus.metrics()); // to the recorder installed with `metrics`
    /// # Ok(()) }
    /// ```
    #[derive(Debug, Default)]
    pub struct MetricsExporter {
        labels: Vec<Label>,
        described: bool,
        counters: HashMap<Series, u64>,
        histograms: HashMap<Series, LatencyBuckets>,
        gauges: HashSet<Series>,
    }

    impl MetricsExporter {
        /// An exporter with no extra labels.
        pub fn new() -> Self {
            Self::default()
        }

        /// Adds a label to every metric, such as the service name or the bus's role.
        #[must_use]
        pub fn label(
            mut self,
            key: impl Into<SharedString>,
            value: impl Into<SharedString>,
        ) -> Self {
            self.labels.push(Label::new(key, value));
            self
        }

        /// Records what changed since the previous call: counter increments, histogram samples,
        /// and the current gauges (set to 0 for handlers that are gone).
        pub fn record(&mut self, metrics: &Metrics) {
            if !self.described {
                self.described = true;
                for (name, kind, unit, text) in DESCRIPTIONS {
                    match kind {
                        Kind::Counter => metrics::describe_counter!(*name, *unit, *text),
                        Kind::Gauge => metrics::describe_gauge!(*name, *unit, *text),
                        Kind::Histogram => metrics::describe_histogram!(*name, *unit, *text),
                    }
                }
            }
            let mut counters: HashMap<Series, u64> = HashMap::new();
            let mut histograms: HashMap<Series, LatencyBuckets> = HashMap::new();
            let mut gauges: HashMap<Series, u64> = HashMap::new();
            let base = self.labels.clone();
            let with = |extra: &[(&'static str, &str)]| -> Vec<Label> {
                let mut l = base.clone();
                l.extend(
                    extra
                        .iter()
                        .map(|(k, v)| Label::new(*k, SharedString::from(v.to_string()))),
                );
                l
            };
            let mut count = |name: &'static str, labels: &Vec<Label>, value: u64| {
                *counters.entry((name, labels.clone())).or_default() += value;
            };

            count(
                "eventbus_publish_errors_total",
                &base,
                metrics.publish_errors,
            );
            count("eventbus_messages_received_total", &base, metrics.received);
            count("eventbus_decode_errors_total", &base, metrics.decode_errors);
            count("eventbus_unrouted_total", &base, metrics.unrouted);
            count("eventbus_reconnects_total", &base, metrics.reconnects);
            for (event_type, t) in &metrics.event_types {
                let l = with(&[("event_type", event_type)]);
                if t.published > 0 {
                    count("eventbus_published_total", &l, t.published);
                }
                if t.received > 0 {
                    count("eventbus_received_total", &l, t.received);
                }
            }
            for h in &metrics.handlers {
                let l = with(&[("handler", &h.name), ("event_type", &h.event_type)]);
                count("eventbus_handler_received_total", &l, h.received);
                count("eventbus_handled_total", &l, h.handled);
                count("eventbus_failed_total", &l, h.failed);
                count("eventbus_panicked_total", &l, h.panicked);
                count("eventbus_timed_out_total", &l, h.timed_out);
                count("eventbus_retried_total", &l, h.retried);
                count("eventbus_dead_lettered_total", &l, h.dead_lettered);
                count("eventbus_dropped_total", &l, h.dropped);
                count("eventbus_handler_decode_errors_total", &l, h.decode_errors);
                *gauges
                    .entry(("eventbus_queue_depth", l.clone()))
                    .or_default() += h.queue_depth;
                *gauges.entry(("eventbus_in_flight", l.clone())).or_default() += h.in_flight;
                add_buckets(
                    histograms
                        .entry(("eventbus_handler_duration_seconds", l))
                        .or_default(),
                    &h.latency.buckets,
                );
            }
            add_buckets(
                histograms
                    .entry(("eventbus_publish_duration_seconds", base.clone()))
                    .or_default(),
                &metrics.publish_latency.buckets,
            );

            for (series, value) in &counters {
                let before = self.counters.get(series).copied().unwrap_or(0);
                // A counter that went down was reset: everything it holds is new.
                let delta = if *value >= before {
                    *value - before
                } else {
                    *value
                };
                let counter = metrics::counter!(series.0, series.1.clone());
                // Touch the series even at zero, so it is exported from the start.
                counter.increment(delta);
            }
            self.counters = counters;

            for (series, buckets) in &histograms {
                let before = self.histograms.get(series).copied().unwrap_or_default();
                let reset = buckets
                    .counts()
                    .iter()
                    .zip(before.counts())
                    .any(|(now, was)| now < was);
                let histogram = metrics::histogram!(series.0, series.1.clone());
                for (i, (now, was)) in buckets.counts().iter().zip(before.counts()).enumerate() {
                    let delta = if reset { *now } else { now - was };
                    if delta > 0 {
                        let upper = if i == 0 { 1u64 } else { 1u64 << i };
                        histogram.record_many(
                            Duration::from_micros(upper).as_secs_f64(),
                            usize::try_from(delta).unwrap_or(usize::MAX),
                        );
                    }
                }
            }
            self.histograms = histograms;

            for series in self.gauges.iter().filter(|s| !gauges.contains_key(*s)) {
                metrics::gauge!(series.0, series.1.clone()).set(0.0);
            }
            for (series, value) in &gauges {
                metrics::gauge!(series.0, series.1.clone()).set(*value as f64);
            }
            self.gauges = gauges.into_keys().collect();
        }
    }

    fn add_buckets(into: &mut LatencyBuckets, from: &LatencyBuckets) {
        into.merge(from);
    }

    /// Exports a bus's metrics every `interval` until dropped or [stopped](Self::stop): see
    /// [`export_metrics`].
    #[derive(Debug)]
    #[must_use = "dropping a MetricsExport stops the export"]
    pub struct MetricsExport {
        bus: EventBus,
        task: Option<tokio::task::JoinHandle<()>>,
        exporter: Arc<Mutex<MetricsExporter>>,
        guard: Option<DropGuard>,
    }

    impl MetricsExport {
        /// Records the current snapshot now, between ticks.
        pub fn flush(&self) {
            lock(&self.exporter).record(&self.bus.metrics());
        }

        /// Stops the export after a last snapshot.
        pub async fn stop(mut self) {
            if let Some(guard) = self.guard.take() {
                guard.disarm().cancel();
            }
            if let Some(task) = self.task.take() {
                let _ = task.await;
            }
        }
    }

    fn lock(m: &Mutex<MetricsExporter>) -> std::sync::MutexGuard<'_, MetricsExporter> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exports `bus`'s metrics through the `metrics` facade every `interval` (and once more when
    /// stopped), on a task of the current Tokio runtime, to the recorder the application
    /// installed. Dropping the returned handle stops it.
    ///
    /// ```no_run
    /// # async fn run(bus: eventbus::EventBus) {
    /// // metrics_exporter_prometheus::PrometheusBuilder::new().install()?;
    /// let export = eventbus::observe::export_metrics(&bus, std::time::Duration::from_secs(10));
    /// // ...
    /// bus.shutdown().await.ok();
    /// export.stop().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or when `interval` is zero.
    pub fn export_metrics(bus: &EventBus, interval: Duration) -> MetricsExport {
        export_metrics_with(bus, interval, MetricsExporter::new())
    }

    /// [`export_metrics`] with an exporter of your own, such as one with extra
    /// [labels](MetricsExporter::label).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or when `interval` is zero.
    pub fn export_metrics_with(
        bus: &EventBus,
        interval: Duration,
        exporter: MetricsExporter,
    ) -> MetricsExport {
        assert!(!interval.is_zero(), "the export interval must not be zero");
        let cancel = CancellationToken::new();
        let exporter = Arc::new(Mutex::new(exporter));
        let (handle_bus, token, shared) = (bus.clone(), cancel.clone(), exporter.clone());
        let bus = bus.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stop = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = token.cancelled() => true,
                };
                lock(&shared).record(&bus.metrics());
                if stop {
                    break;
                }
            }
        });
        MetricsExport {
            bus: handle_bus,
            task: Some(task),
            exporter,
            guard: Some(cancel.drop_guard()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid_traceparent;

    #[test]
    fn traceparent_validation() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_valid_traceparent(ok));
        assert!(is_valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
