//! The `metrics` feature: the bus's counters, gauges and histograms exported through the
//! `metrics` facade, checked with metrics-util's `DebuggingRecorder` on `memory://`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventbus::{
    Event, EventBus, HandlerOptions, MetricsExporter, Overflow, RetryPolicy, export_metrics_with,
};
use eventbus_suite::wait_for;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "metered")]
struct Metered {
    n: u64,
}

const WAIT: Duration = Duration::from_secs(10);

/// What the recorder holds, summed over snapshots: counters and histogram sample counts add
/// up, gauges keep their last value. Keyed by `name{label=value,...}` with labels sorted.
#[derive(Debug, Default)]
struct Seen {
    values: HashMap<String, f64>,
    samples: HashMap<String, Vec<f64>>,
}

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, _unit, _desc, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(c) => *self.values.entry(name).or_default() += c as f64,
                DebugValue::Gauge(g) => {
                    self.values.insert(name, g.into_inner());
                }
                DebugValue::Histogram(h) => self
                    .samples
                    .entry(name)
                    .or_default()
                    .extend(h.into_iter().map(|v| v.into_inner())),
            }
        }
    }

    fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or_else(|| {
            let mut known: Vec<_> = self.values.keys().collect();
            known.sort();
            panic!("no metric `{name}`; have {known:#?}")
        })
    }

    fn samples(&self, name: &str) -> &[f64] {
        self.samples.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn h(metric: &str, handler: &str) -> String {
    format!("{metric}{{event_type=metered,handler={handler},service=test}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_gauges_and_histograms_follow_the_bus() {
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let bus = EventBus::builder()
        .service("metered")
        .handler_with(HandlerOptions::new().name("ok"), |_: Metered| async {})
        .handler_with(
            HandlerOptions::new()
                .name("flaky")
                .retry(RetryPolicy::attempts(2).backoff(Duration::ZERO, Duration::ZERO))
                .dead_letter(true),
            |e: Metered| async move {
                if e.n.is_multiple_of(2) {
                    Err("even")
                } else {
                    Ok(())
                }
            },
        )
        .handler_with(
            HandlerOptions::new().name("panicky"),
            |e: Metered| async move {
                assert!(e.n != 3, "three is right out");
            },
        )
        .handler_with(
            HandlerOptions::new()
                .name("slow")
                .timeout(Duration::from_millis(5)),
            |_: Metered| async { tokio::time::sleep(Duration::from_secs(60)).await },
        )
        .handler_with(
            HandlerOptions::new()
                .name("stuck")
                .no_timeout()
                .queue_capacity(1)
                .overflow(Overflow::DropNewest),
            move |_: Metered| {
                let r = r.clone();
                async move {
                    while !r.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            },
        )
        .on_error(|_| {})
        .connect("memory://")
        .await
        .unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut exporter = MetricsExporter::new().label("service", "test");
    let mut seen = Seen::default();

    // One event, taken by `stuck`; then three more: one waits in its queue, two are dropped.
    bus.publish(Metered { n: 1 }).await.unwrap();
    assert!(
        wait_for(WAIT, || bus.metrics().handler("stuck").unwrap().in_flight
            == 1)
        .await
    );
    for n in 2..=4 {
        bus.publish(Metered { n }).await.unwrap();
    }
    bus.publish_raw("events:metered", "not json").await.unwrap();
    let done = |bus: &EventBus, n: u64| {
        let m = bus.metrics();
        ["ok", "flaky", "panicky", "slow"].iter().all(|name| {
            let h = m.handler(name).unwrap();
            h.handled + h.failed == n
        })
    };
    assert!(
        wait_for(WAIT, || done(&bus, 4)).await,
        "{:#?}",
        bus.metrics()
    );

    metrics::with_local_recorder(&recorder, || exporter.record(&bus.metrics()));
    seen.take(&snapshotter);

    let m = "event_type=metered,service=test";
    assert_eq!(seen.get(&format!("eventbus_published_total{{{m}}}")), 4.0);
    assert_eq!(seen.get(&format!("eventbus_received_total{{{m}}}")), 4.0);
    assert_eq!(
        seen.get("eventbus_messages_received_total{service=test}"),
        5.0
    );
    assert_eq!(seen.get("eventbus_decode_errors_total{service=test}"), 1.0);
    assert_eq!(seen.get("eventbus_publish_errors_total{service=test}"), 0.0);
    assert_eq!(seen.get("eventbus_reconnects_total{service=test}"), 0.0);
    assert_eq!(seen.get(&h("eventbus_handled_total", "ok")), 4.0);
    assert_eq!(
        seen.get(&h("eventbus_handler_decode_errors_total", "ok")),
        1.0
    );
    assert_eq!(seen.get(&h("eventbus_handled_total", "flaky")), 2.0);
    assert_eq!(seen.get(&h("eventbus_failed_total", "flaky")), 2.0);
    assert_eq!(seen.get(&h("eventbus_retried_total", "flaky")), 2.0);
    assert_eq!(seen.get(&h("eventbus_dead_lettered_total", "flaky")), 2.0);
    assert_eq!(seen.get(&h("eventbus_panicked_total", "panicky")), 1.0);
    assert_eq!(seen.get(&h("eventbus_failed_total", "panicky")), 1.0);
    assert_eq!(seen.get(&h("eventbus_timed_out_total", "slow")), 4.0);
    assert_eq!(seen.get(&h("eventbus_failed_total", "slow")), 4.0);
    assert_eq!(
        seen.get(&h("eventbus_handler_received_total", "stuck")),
        4.0
    );
    assert_eq!(seen.get(&h("eventbus_dropped_total", "stuck")), 2.0);
    assert_eq!(seen.get(&h("eventbus_queue_depth", "stuck")), 1.0);
    assert_eq!(seen.get(&h("eventbus_in_flight", "stuck")), 1.0);
    assert_eq!(seen.get(&h("eventbus_queue_depth", "ok")), 0.0);
    let ok_durations = seen.samples(&h("eventbus_handler_duration_seconds", "ok"));
    assert_eq!(ok_durations.len(), 4);
    assert!(
        ok_durations.iter().all(|s| *s > 0.0 && *s < 1.0),
        "{ok_durations:?}"
    );
    assert_eq!(
        seen.samples("eventbus_publish_duration_seconds{service=test}")
            .len(),
        4 + 1,
        "typed and raw publishes are timed"
    );

    // A second export adds only what happened since the first.
    release.store(true, Ordering::Relaxed);
    let stuck_done = |bus: &EventBus, n: u64| {
        let s = bus.metrics();
        let h = s.handler("stuck").unwrap();
        h.handled == n && h.in_flight == 0 && h.queue_depth == 0
    };
    assert!(wait_for(WAIT, || stuck_done(&bus, 2)).await);
    for n in 5..=6 {
        // One at a time: `stuck` holds one event in its queue at most.
        bus.publish(Metered { n }).await.unwrap();
        assert!(wait_for(WAIT, || stuck_done(&bus, n - 2)).await);
    }
    assert!(wait_for(WAIT, || done(&bus, 6)).await);
    metrics::with_local_recorder(&recorder, || exporter.record(&bus.metrics()));
    seen.take(&snapshotter);
    assert_eq!(seen.get(&format!("eventbus_published_total{{{m}}}")), 6.0);
    assert_eq!(seen.get(&h("eventbus_handled_total", "ok")), 6.0);
    assert_eq!(seen.get(&h("eventbus_handled_total", "flaky")), 3.0);
    assert_eq!(seen.get(&h("eventbus_timed_out_total", "slow")), 6.0);
    assert_eq!(seen.get(&h("eventbus_handled_total", "stuck")), 4.0);
    assert_eq!(seen.get(&h("eventbus_dropped_total", "stuck")), 2.0);
    assert_eq!(seen.get(&h("eventbus_queue_depth", "stuck")), 0.0);
    assert_eq!(seen.get(&h("eventbus_in_flight", "stuck")), 0.0);
    assert_eq!(
        seen.samples(&h("eventbus_handler_duration_seconds", "ok"))
            .len(),
        6
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_handlers_zero_their_gauges_and_restarts_count_from_zero() {
    let bus = EventBus::builder().connect("memory://").await.unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut exporter = MetricsExporter::new().label("service", "test");
    let mut seen = Seen::default();
    let options = || HandlerOptions::new().name("late");

    let sub = bus
        .subscribe_with(options(), |_: Metered| async {})
        .await
        .unwrap();
    bus.publish(Metered { n: 1 }).await.unwrap();
    bus.publish(Metered { n: 2 }).await.unwrap();
    assert!(
        wait_for(WAIT, || bus
            .metrics()
            .handler("late")
            .is_some_and(|h| h.handled == 2))
        .await
    );
    metrics::with_local_recorder(&recorder, || exporter.record(&bus.metrics()));
    seen.take(&snapshotter);
    assert_eq!(seen.get(&h("eventbus_handled_total", "late")), 2.0);

    sub.unsubscribe().await.unwrap();
    metrics::with_local_recorder(&recorder, || exporter.record(&bus.metrics()));
    seen.take(&snapshotter);
    assert_eq!(seen.get(&h("eventbus_queue_depth", "late")), 0.0);

    // Registered again under the same name: its counters start at zero, and every run counts.
    let _sub = bus
        .subscribe_with(options(), |_: Metered| async {})
        .await
        .unwrap();
    bus.publish(Metered { n: 3 }).await.unwrap();
    assert!(
        wait_for(WAIT, || bus
            .metrics()
            .handler("late")
            .is_some_and(|h| h.handled == 1))
        .await
    );
    metrics::with_local_recorder(&recorder, || exporter.record(&bus.metrics()));
    seen.take(&snapshotter);
    assert_eq!(seen.get(&h("eventbus_handled_total", "late")), 3.0);
    bus.shutdown().await.unwrap();
}

/// The periodic export task, with the recorder installed globally (the only test in this
/// binary that does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_task_records_periodically_and_on_stop() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other global recorder in this test binary");
    let mut seen = Seen::default();

    let bus = EventBus::builder()
        .handler_with(HandlerOptions::new().name("ok"), |_: Metered| async {})
        .connect("memory://")
        .await
        .unwrap();
    let export = export_metrics_with(
        &bus,
        Duration::from_millis(20),
        MetricsExporter::new().label("service", "global"),
    );
    bus.publish(Metered { n: 1 }).await.unwrap();
    let name = "eventbus_handled_total{event_type=metered,handler=ok,service=global}";
    assert!(
        wait_for(WAIT, || {
            seen.take(&snapshotter);
            seen.values.get(name) == Some(&1.0)
        })
        .await,
        "{seen:#?}"
    );

    // Stopping records a last snapshot.
    bus.publish(Metered { n: 2 }).await.unwrap();
    assert!(wait_for(WAIT, || bus.metrics().handler("ok").unwrap().handled == 2).await);
    export.stop().await;
    seen.take(&snapshotter);
    assert_eq!(seen.get(name), 2.0);
    bus.shutdown().await.unwrap();
}
