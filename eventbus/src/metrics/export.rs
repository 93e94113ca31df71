//! Exporting the bus's counters through the `metrics` facade.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Label, SharedString};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::EventBus;
use crate::metrics::{LatencyBuckets, Metrics, bucket_upper_bound};
use crate::sync::lock;

use super::descriptions::{DESCRIPTIONS, Kind};

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
/// | `eventbus_skipped_total` | counter | |
/// | `eventbus_reconnects_total` | counter | |
/// | `eventbus_handler_received_total` | counter | `handler`, `event_type` |
/// | `eventbus_handled_total` | counter | `handler`, `event_type` |
/// | `eventbus_failed_total` | counter | `handler`, `event_type` |
/// | `eventbus_panicked_total` | counter | `handler`, `event_type` |
/// | `eventbus_timed_out_total` | counter | `handler`, `event_type` |
/// | `eventbus_retried_total` | counter | `handler`, `event_type` |
/// | `eventbus_deferred_total` | counter | `handler`, `event_type` |
/// | `eventbus_dead_lettered_total` | counter | `handler`, `event_type` |
/// | `eventbus_dropped_total` | counter | `handler`, `event_type` |
/// | `eventbus_handler_decode_errors_total` | counter | `handler`, `event_type` |
/// | `eventbus_redelivered_total` | counter | `handler`, `event_type` |
/// | `eventbus_claimed_total` | counter | `handler`, `event_type` |
/// | `eventbus_duplicates_total` | counter | `handler`, `event_type` |
/// | `eventbus_trimmed_total` | counter | `handler`, `event_type` |
/// | `eventbus_group_pending` | gauge | `group`, `stream` |
/// | `eventbus_group_lag` | gauge | `group`, `stream` |
/// | `eventbus_group_consumers` | gauge | `group`, `stream` |
/// | `eventbus_queue_depth` | gauge | `handler`, `event_type` |
/// | `eventbus_in_flight` | gauge | `handler`, `event_type` |
/// | `eventbus_handler_duration_seconds` | histogram | `handler`, `event_type` |
/// | `eventbus_outbox_depth` | gauge | (feature `postgres`, with an outbox) |
/// | `eventbus_outbox_oldest_age_seconds` | gauge | |
/// | `eventbus_outbox_relayed_total` | counter | |
/// | `eventbus_outbox_poisoned_total` | counter | |
/// | `eventbus_outbox_relay_active` | gauge | |
/// | `eventbus_scheduled_total` | counter | `event_type` |
/// | `eventbus_scheduled_fired_total` | counter | |
/// | `eventbus_scheduled_mover_errors_total` | counter | |
/// | `eventbus_scheduled_lateness_seconds` | histogram | |
/// | `eventbus_scheduled_waiting` | gauge | `queue` |
/// | `eventbus_scheduled_overdue_seconds` | gauge | `queue` |
///
/// How these map onto OpenTelemetry's messaging metrics is in the crate documentation's
/// [Tracing](crate#tracing).
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
/// let mut exporter = eventbus::MetricsExporter::new().label("service", "accounts");
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
    pub fn label(mut self, key: impl Into<SharedString>, value: impl Into<SharedString>) -> Self {
        self.labels.push(Label::new(key, value));
        self
    }

    /// Records what changed since the previous call: counter increments, histogram samples,
    /// and the current gauges (set to 0 for handlers that are gone).
    pub fn record(&mut self, metrics: &Metrics) {
        self.describe_once();
        let series = Collected::from_metrics(&self.labels, metrics);
        self.emit_counters(series.counters);
        self.emit_histograms(series.histograms);
        self.emit_gauges(series.gauges);
    }

    fn describe_once(&mut self) {
        if std::mem::replace(&mut self.described, true) {
            return;
        }
        for (name, kind, unit, text) in DESCRIPTIONS {
            match kind {
                Kind::Counter => metrics::describe_counter!(*name, *unit, *text),
                Kind::Gauge => metrics::describe_gauge!(*name, *unit, *text),
                Kind::Histogram => metrics::describe_histogram!(*name, *unit, *text),
            }
        }
    }

    fn emit_counters(&mut self, counters: HashMap<Series, u64>) {
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
    }

    fn emit_histograms(&mut self, histograms: HashMap<Series, LatencyBuckets>) {
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
                    histogram.record_many(
                        bucket_upper_bound(i).as_secs_f64(),
                        usize::try_from(delta).unwrap_or(usize::MAX),
                    );
                }
            }
        }
        self.histograms = histograms;
    }

    fn emit_gauges(&mut self, gauges: HashMap<Series, u64>) {
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

/// Exports `bus`'s metrics through the `metrics` facade every `interval` (and once more when
/// stopped), on a task of the current Tokio runtime, to the recorder the application
/// installed. Dropping the returned handle stops it.
///
/// ```no_run
/// # async fn run(bus: eventbus::EventBus) {
/// // metrics_exporter_prometheus::PrometheusBuilder::new().install()?;
/// let export = eventbus::export_metrics(&bus, std::time::Duration::from_secs(10));
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

/// One snapshot turned into series: name and labels to value.
#[derive(Default)]
struct Collected {
    counters: HashMap<Series, u64>,
    histograms: HashMap<Series, LatencyBuckets>,
    gauges: HashMap<Series, u64>,
}

fn labels(base: &[Label], extra: &[(&'static str, &str)]) -> Vec<Label> {
    let mut l = base.to_vec();
    l.extend(
        extra
            .iter()
            .map(|(k, v)| Label::new(*k, SharedString::from(v.to_string()))),
    );
    l
}

impl Collected {
    fn from_metrics(base: &[Label], metrics: &Metrics) -> Self {
        let mut c = Collected::default();
        let base = base.to_vec();
        c.count(
            "eventbus_publish_errors_total",
            &base,
            metrics.publish_errors,
        );
        c.count("eventbus_messages_received_total", &base, metrics.received);
        c.count("eventbus_decode_errors_total", &base, metrics.decode_errors);
        c.count("eventbus_unrouted_total", &base, metrics.unrouted);
        c.count("eventbus_skipped_total", &base, metrics.skipped);
        c.count("eventbus_reconnects_total", &base, metrics.reconnects);
        for (event_type, t) in &metrics.event_types {
            let l = labels(&base, &[("event_type", event_type)]);
            if t.published > 0 {
                c.count("eventbus_published_total", &l, t.published);
            }
            if t.received > 0 {
                c.count("eventbus_received_total", &l, t.received);
            }
            if t.scheduled > 0 {
                c.count("eventbus_scheduled_total", &l, t.scheduled);
            }
        }
        for h in &metrics.handlers {
            c.handler(&base, h);
        }
        #[cfg(feature = "postgres")]
        if let Some(o) = &metrics.outbox {
            c.outbox(&base, o);
        }
        let mover = &metrics.scheduled;
        c.queues(&base, &mover.queues);
        c.count("eventbus_scheduled_fired_total", &base, mover.fired);
        c.count("eventbus_scheduled_mover_errors_total", &base, mover.errors);
        add_buckets(
            c.histograms
                .entry(("eventbus_scheduled_lateness_seconds", base.clone()))
                .or_default(),
            &mover.lateness.buckets,
        );
        add_buckets(
            c.histograms
                .entry(("eventbus_publish_duration_seconds", base))
                .or_default(),
            &metrics.publish_latency.buckets,
        );
        c
    }

    fn count(&mut self, name: &'static str, labels: &[Label], value: u64) {
        *self.counters.entry((name, labels.to_vec())).or_default() += value;
    }

    /// The outbox as the bus's relay saw it.
    #[cfg(feature = "postgres")]
    fn outbox(&mut self, base: &[Label], o: &crate::postgres::OutboxMetrics) {
        self.count("eventbus_outbox_relayed_total", base, o.relayed);
        self.count("eventbus_outbox_poisoned_total", base, o.poisoned);
        let age = o.oldest_age.map_or(0, |a| a.as_secs());
        for (name, value) in [
            ("eventbus_outbox_depth", o.depth),
            ("eventbus_outbox_oldest_age_seconds", age),
            ("eventbus_outbox_relay_active", u64::from(o.active)),
        ] {
            self.gauges.insert((name, base.to_vec()), value);
        }
    }

    /// The schedule queues' gauges: how many wait, how long the first has been overdue.
    fn queues(&mut self, base: &[Label], queues: &[crate::QueueStatus]) {
        let now = std::time::SystemTime::now();
        for q in queues {
            let l = labels(base, &[("queue", &q.queue)]);
            let overdue = q
                .next_due
                .and_then(|due| now.duration_since(due).ok())
                .map_or(0, |d| d.as_secs());
            self.gauges
                .insert(("eventbus_scheduled_waiting", l.clone()), q.waiting);
            self.gauges
                .insert(("eventbus_scheduled_overdue_seconds", l), overdue);
        }
    }

    /// A consumer group's gauges, once per group however many handlers share it.
    fn group(&mut self, base: &[Label], g: &crate::GroupMetrics) {
        let l = labels(base, &[("group", &g.name), ("stream", &g.stream)]);
        self.gauges
            .insert(("eventbus_group_pending", l.clone()), g.pending);
        self.gauges
            .insert(("eventbus_group_consumers", l.clone()), g.consumers);
        if let Some(lag) = g.lag {
            self.gauges.insert(("eventbus_group_lag", l), lag);
        }
    }

    fn handler(&mut self, base: &[Label], h: &crate::HandlerMetrics) {
        let l = labels(base, &[("handler", &h.name), ("event_type", &h.event_type)]);
        self.count("eventbus_handler_received_total", &l, h.received);
        self.count("eventbus_handled_total", &l, h.handled);
        self.count("eventbus_failed_total", &l, h.failed);
        self.count("eventbus_panicked_total", &l, h.panicked);
        self.count("eventbus_timed_out_total", &l, h.timed_out);
        self.count("eventbus_retried_total", &l, h.retried);
        self.count("eventbus_deferred_total", &l, h.deferred);
        self.count("eventbus_dead_lettered_total", &l, h.dead_lettered);
        self.count("eventbus_dropped_total", &l, h.dropped);
        self.count("eventbus_handler_decode_errors_total", &l, h.decode_errors);
        self.count("eventbus_redelivered_total", &l, h.redelivered);
        self.count("eventbus_claimed_total", &l, h.claimed);
        self.count("eventbus_duplicates_total", &l, h.duplicates);
        self.count("eventbus_trimmed_total", &l, h.trimmed);
        if let Some(g) = &h.group {
            self.group(base, g);
        }
        *self
            .gauges
            .entry(("eventbus_queue_depth", l.clone()))
            .or_default() += h.queue_depth;
        *self
            .gauges
            .entry(("eventbus_in_flight", l.clone()))
            .or_default() += h.in_flight;
        add_buckets(
            self.histograms
                .entry(("eventbus_handler_duration_seconds", l))
                .or_default(),
            &h.latency.buckets,
        );
    }
}
