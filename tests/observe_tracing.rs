//! Tracing: the `eventbus.publish` and `eventbus.handle` spans and their fields, and the W3C
//! trace context (with correlation and causation) that a publish inside a handler inherits.
//! A small capturing `Layer` records every span's fields; each test looks only at its own
//! event types.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use eventbus::{
    Envelope, Event, EventBus, EventContext, HandlerOptions, PublishErrorKind, PublishOptions,
};
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

const WAIT: Duration = Duration::from_secs(10);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const OTHER_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A closed span: its name, fields and its parent's fields.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<BTreeMap<String, String>>,
}

impl SpanRecord {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

#[derive(Clone, Default)]
struct Capture {
    closed: Arc<Mutex<Vec<SpanRecord>>>,
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        let parent = if let Some(p) = attrs.parent() {
            ctx.span(p)
        } else if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            None
        };
        let parent =
            parent.and_then(|p| p.extensions().get::<SpanRecord>().map(|r| r.fields.clone()));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanRecord {
                name: attrs.metadata().name(),
                fields: fields.0,
                parent,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(rec) = span.extensions_mut().get_mut::<SpanRecord>()
        {
            let mut fields = Fields(std::mem::take(&mut rec.fields));
            values.record(&mut fields);
            rec.fields = fields.0;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(rec) = span.extensions().get::<SpanRecord>()
        {
            self.closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(rec.clone());
        }
    }
}

/// The capturing subscriber, installed once for the whole test binary.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing_subscriber::registry().with(capture.clone()).init();
        capture
    })
}

/// The closed spans named `name` whose `eventbus.event_type` is `event_type`.
fn spans(name: &str, event_type: &str) -> Vec<SpanRecord> {
    capture()
        .closed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|s| s.name == name && s.field("eventbus.event_type") == Some(event_type))
        .cloned()
        .collect()
}

/// Waits for `n` closed spans and returns them.
async fn wait_spans(name: &str, event_type: &str, n: usize) -> Vec<SpanRecord> {
    let found = wait_for(WAIT, || spans(name, event_type).len() >= n).await;
    let all = spans(name, event_type);
    assert!(
        found,
        "expected {n} `{name}` spans for `{event_type}`, got {all:#?}"
    );
    all
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_start")]
struct TraceStart {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_next")]
struct TraceNext {
    n: u64,
}

type Attrs = (Option<String>, Option<String>, Option<String>);

fn attrs<T>(e: &Envelope<T>) -> Attrs {
    (
        e.traceparent().map(str::to_owned),
        e.correlation_id().map(str::to_owned),
        e.causation_id().map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_events_stays_one_trace_and_the_spans_say_so() {
    capture();
    let next = Seen::<Attrs>::new();
    let n2 = next.clone();
    let bus = EventBus::builder()
        .service("tracer")
        .handler_with(
            HandlerOptions::new().name("start"),
            |e: TraceStart, bus: EventBus| async move {
                assert_eq!(
                    EventContext::current().map(|c| c.event_type().to_owned()),
                    Some("trace_start".to_owned())
                );
                bus.publish(TraceNext { n: e.n }).await.map(|_| ())
            },
        )
        .handler_with(
            HandlerOptions::new().name("next"),
            move |e: Envelope<TraceNext>| {
                let n2 = n2.clone();
                async move { n2.push(attrs(&e)) }
            },
        )
        .connect("memory://")
        .await
        .unwrap();
    assert!(EventContext::current().is_none());

    let receipt = bus
        .publish_with(
            TraceStart { n: 1 },
            PublishOptions::new().traceparent(TRACEPARENT),
        )
        .await
        .unwrap();
    assert!(wait_for(WAIT, || next.len() == 1).await);
    // The follow-up carries the trace, and is correlated with and caused by the first event.
    assert_eq!(
        next.snapshot(),
        vec![(
            Some(TRACEPARENT.to_owned()),
            Some(receipt.id.clone()),
            Some(receipt.id.clone())
        )]
    );

    let publish = &wait_spans("eventbus.publish", "trace_start", 1).await[0];
    assert_eq!(publish.field("messaging.message.id"), Some(&*receipt.id));
    assert_eq!(publish.field("messaging.system"), Some("redis"));
    assert_eq!(publish.field("messaging.operation.type"), Some("send"));
    assert_eq!(publish.field("messaging.operation.name"), Some("publish"));
    assert_eq!(
        publish.field("messaging.destination.name"),
        Some("events:trace_start")
    );
    assert_eq!(
        publish.field("otel.name"),
        Some("publish events:trace_start")
    );
    assert_eq!(publish.field("eventbus.traceparent"), Some(TRACEPARENT));
    assert_eq!(publish.field("messaging.message.conversation_id"), None);
    assert_eq!(publish.field("error.type"), None);

    let handle = &wait_spans("eventbus.handle", "trace_start", 1).await[0];
    assert_eq!(handle.field("messaging.message.id"), Some(&*receipt.id));
    assert_eq!(handle.field("messaging.operation.type"), Some("process"));
    assert_eq!(
        handle.field("messaging.destination.name"),
        Some("events:trace_start")
    );
    assert_eq!(
        handle.field("otel.name"),
        Some("process events:trace_start")
    );
    assert_eq!(handle.field("eventbus.handler"), Some("start"));
    assert_eq!(handle.field("eventbus.attempt"), Some("1"));
    assert_eq!(handle.field("eventbus.traceparent"), Some(TRACEPARENT));
    assert_eq!(handle.field("error.type"), None);

    // The follow-up's publish span is a child of the handler's span, and carries the chain.
    let follow = &wait_spans("eventbus.publish", "trace_next", 1).await[0];
    assert_eq!(follow.field("eventbus.traceparent"), Some(TRACEPARENT));
    assert_eq!(
        follow.field("messaging.message.conversation_id"),
        Some(&*receipt.id)
    );
    let parent = follow.parent.as_ref().expect("a parent span");
    assert_eq!(
        parent.get("messaging.message.id").map(String::as_str),
        Some(&*receipt.id)
    );
    assert_eq!(
        parent.get("eventbus.handler").map(String::as_str),
        Some("start")
    );
    let next_handle = &wait_spans("eventbus.handle", "trace_next", 1).await[0];
    assert_eq!(next_handle.field("eventbus.traceparent"), Some(TRACEPARENT));
    assert_eq!(
        next_handle.field("messaging.message.conversation_id"),
        Some(&*receipt.id)
    );
    bus.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_explicit")]
struct TraceExplicit {
    how: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_explicit_next")]
struct TraceExplicitNext {
    how: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_attributes_win_and_spawned_tasks_inherit_only_when_scoped() {
    capture();
    let next = Seen::<(String, Attrs)>::new();
    let n2 = next.clone();
    let bus = EventBus::builder()
        .handler(|e: Envelope<TraceExplicit>, bus: EventBus| async move {
            let how = e.data().how.clone();
            let follow = TraceExplicitNext { how: how.clone() };
            match how.as_str() {
                "explicit" => {
                    let options = PublishOptions::new()
                        .correlation_id("mine")
                        .traceparent(OTHER_TRACEPARENT);
                    bus.publish_with(follow, options).await?;
                }
                "caused_by" => {
                    // Outside the handler's task, `caused_by` alone carries the trace.
                    let options = PublishOptions::caused_by(&e);
                    tokio::spawn(async move { bus.publish_with(follow, options).await }).await??;
                }
                "scoped" => {
                    let ctx = EventContext::current().expect("inside a handler");
                    tokio::spawn(ctx.scope(async move { bus.publish(follow).await })).await??;
                }
                _ => {
                    tokio::spawn(async move { bus.publish(follow).await }).await??;
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .handler(move |e: Envelope<TraceExplicitNext>| {
            let n2 = n2.clone();
            async move { n2.push((e.data().how.clone(), attrs(&e))) }
        })
        .connect("memory://")
        .await
        .unwrap();

    let mut ids = BTreeMap::new();
    for how in ["explicit", "caused_by", "scoped", "unscoped"] {
        let receipt = bus
            .publish_with(
                TraceExplicit {
                    how: how.to_owned(),
                },
                PublishOptions::new().traceparent(TRACEPARENT),
            )
            .await
            .unwrap();
        ids.insert(how, receipt.id);
    }
    assert!(wait_for(WAIT, || next.len() == 4).await);
    let got: BTreeMap<String, Attrs> = next.snapshot().into_iter().collect();
    let tp = || Some(TRACEPARENT.to_owned());
    assert_eq!(
        got["explicit"],
        (
            Some(OTHER_TRACEPARENT.to_owned()),
            Some("mine".to_owned()),
            None
        )
    );
    let caused = (
        tp(),
        Some(ids["caused_by"].clone()),
        Some(ids["caused_by"].clone()),
    );
    assert_eq!(got["caused_by"], caused);
    let scoped = (
        tp(),
        Some(ids["scoped"].clone()),
        Some(ids["scoped"].clone()),
    );
    assert_eq!(got["scoped"], scoped);
    assert_eq!(got["unscoped"], (None, None, None));
    bus.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_bad")]
struct TraceBad {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_bad_next")]
struct TraceBadNext {
    n: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_traceparent_is_neither_recorded_nor_inherited() {
    capture();
    let next = Seen::<Attrs>::new();
    let n2 = next.clone();
    let bus = EventBus::builder()
        .handler(|e: TraceBad, bus: EventBus| async move {
            bus.publish(TraceBadNext { n: e.n }).await.map(|_| ())
        })
        .handler(move |e: Envelope<TraceBadNext>| {
            let n2 = n2.clone();
            async move { n2.push(attrs(&e)) }
        })
        .connect("memory://")
        .await
        .unwrap();
    let receipt = bus
        .publish_with(
            TraceBad { n: 1 },
            PublishOptions::new().traceparent("not-a-trace\n"),
        )
        .await
        .unwrap();
    assert!(wait_for(WAIT, || next.len() == 1).await);
    assert_eq!(
        next.snapshot(),
        vec![(None, Some(receipt.id.clone()), Some(receipt.id.clone()))]
    );
    let handle = &wait_spans("eventbus.handle", "trace_bad", 1).await[0];
    assert_eq!(handle.field("eventbus.traceparent"), None);
    bus.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "trace_fail")]
struct TraceFail {
    how: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_on_the_spans() {
    capture();
    let bus = EventBus::builder()
        .handler_with(
            HandlerOptions::new()
                .name("fails")
                .timeout(Duration::from_millis(10)),
            |e: TraceFail| async move {
                match e.how.as_str() {
                    "error" => Err("it went wrong"),
                    "panic" => panic!("it blew up"),
                    "timeout" => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            },
        )
        .on_error(|_| {})
        .connect("memory://")
        .await
        .unwrap();
    let mut ids = BTreeMap::new();
    for how in ["error", "panic", "timeout", "fine"] {
        let receipt = bus
            .publish(TraceFail {
                how: how.to_owned(),
            })
            .await
            .unwrap();
        ids.insert(receipt.id, how);
    }
    let handled = wait_spans("eventbus.handle", "trace_fail", 4).await;
    let by_how: BTreeMap<&str, Option<&str>> = handled
        .iter()
        .map(|s| {
            let id = s.field("messaging.message.id").unwrap_or_default();
            (ids[id], s.field("error.type"))
        })
        .collect();
    assert_eq!(
        by_how,
        BTreeMap::from([
            ("error", Some("error")),
            ("panic", Some("panic")),
            ("timeout", Some("timeout")),
            ("fine", None),
        ])
    );

    bus.shutdown().await.unwrap();
    let err = bus
        .publish(TraceFail {
            how: "late".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Closed);
    let published = wait_spans("eventbus.publish", "trace_fail", 5).await;
    let failed: Vec<_> = published
        .iter()
        .filter_map(|s| s.field("error.type"))
        .collect();
    assert_eq!(failed, vec!["Closed"]);
}
