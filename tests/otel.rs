//! OpenTelemetry traces (the `otel` feature): one trace from a request's span through two
//! services' buses to every handler, over `memory://` and a redis-server, read back from the
//! SDK's in-memory span exporter behind tracing-opentelemetry. Each test finds its own spans by
//! the trace id of the root span it opened.
#![cfg(feature = "otel")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventbus::{Envelope, Event, EventBus, HandlerOptions, RetryPolicy};
use eventbus_suite::python::{finish_peer, peer, python_with_redis};
use eventbus_suite::{Seen, TestEnv, wait_for};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const WAIT: Duration = Duration::from_secs(10);

/// The exporter every span of this test binary ends in (installed once, with the subscriber).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
            tracing_subscriber::registry().with(layer).init();
            (exporter, provider)
        })
        .0
}

/// The finished spans of trace `id`.
fn trace(id: TraceId) -> Vec<SpanData> {
    let spans = exporter().get_finished_spans().expect("the exported spans");
    spans
        .into_iter()
        .filter(|s| s.span_context.trace_id() == id)
        .collect()
}

/// Waits until trace `id` has `n` finished spans, and returns them.
async fn wait_trace(id: TraceId, n: usize) -> Vec<SpanData> {
    let found = wait_for(WAIT, || trace(id).len() >= n).await;
    let spans = trace(id);
    assert!(
        found,
        "expected {n} spans in trace {id}, got {:#?}",
        names(&spans)
    );
    spans
}

fn names(spans: &[SpanData]) -> Vec<&str> {
    spans.iter().map(|s| &*s.name).collect()
}

/// The one span named `name`.
fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` in {:?}", names(spans));
    found[0]
}

/// A span's attribute, as text.
fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The span contexts a span links to.
fn links(span: &SpanData) -> Vec<(TraceId, SpanId)> {
    span.links
        .iter()
        .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
        .collect()
}

fn id_of(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// Checks that the `n` spans named `name` are each a child of `producer` and linked to it;
/// returns how many of them failed.
fn runs_under(spans: &[SpanData], name: &str, producer: &SpanData, n: usize) -> usize {
    let runs: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(runs.len(), n, "{:?}", names(spans));
    for run in &runs {
        assert_eq!(run.parent_span_id, producer.span_context.span_id());
        assert_eq!(links(run), vec![id_of(producer)]);
    }
    runs.iter()
        .filter(|s| matches!(s.status, Status::Error { .. }))
        .count()
}

/// A request's root span, with baggage, and its trace id.
fn request(name: &'static str) -> (tracing::Span, TraceId) {
    let root = tracing::info_span!("request", otel.name = name, otel.kind = "server");
    let baggage = Context::new().with_baggage(vec![KeyValue::new("tenant", "acme")]);
    root.set_parent(baggage).expect("a parent for the request");
    let trace_id = root.context().span().span_context().trace_id();
    assert_ne!(trace_id, TraceId::INVALID);
    (root, trace_id)
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "otel_order_placed")]
struct OrderPlaced {
    order: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "otel_payment_taken", durable)]
struct PaymentTaken {
    order: u32,
}

/// What the second handler saw of its envelope: its `traceparent` and `baggage`.
type Carried = (Option<String>, Option<String>);

fn carried<T>(e: &Envelope<T>) -> Carried {
    let baggage = e.extension("baggage").and_then(|v| v.as_str());
    (
        e.traceparent().map(str::to_owned),
        baggage.map(str::to_owned),
    )
}

/// Two services: `billing` charges each order placed and publishes the payment (durable);
/// `orders` places orders and confirms payments. Returns (orders, billing) and what the
/// confirming handler saw.
async fn two_services(url: &str) -> (EventBus, EventBus, Seen<Carried>) {
    let billing = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().name("charge"),
            |e: OrderPlaced, bus: EventBus| async move {
                bus.publish(PaymentTaken { order: e.order })
                    .await
                    .map(|_| ())
            },
        )
        .connect(url)
        .await
        .unwrap();
    let seen = Seen::<Carried>::new();
    let s = seen.clone();
    let orders = EventBus::builder()
        .service("orders")
        .handler_with(
            HandlerOptions::new().name("confirm"),
            move |e: Envelope<PaymentTaken>| {
                let s = s.clone();
                async move { s.push(carried(&e)) }
            },
        )
        .connect(url)
        .await
        .unwrap();
    (orders, billing, seen)
}

/// request → publish (orders) → process (billing) → publish → process (orders): one trace,
/// each span the child of the one before, each process span linked to its producer.
async fn one_trace_through_two_services(env: TestEnv) {
    exporter();
    let (orders, billing, seen) = two_services(&env.url).await;
    let (root, trace_id) = request("POST /orders");
    let receipt = orders
        .publish(OrderPlaced { order: 7 })
        .instrument(root.clone())
        .await
        .unwrap();
    drop(root);
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    let spans = wait_trace(trace_id, 5).await;
    assert_eq!(spans.len(), 5, "{:?}", names(&spans));

    let root = one(&spans, "POST /orders");
    let send = one(&spans, "publish events:otel_order_placed");
    let charge = one(&spans, "process events:otel_order_placed");
    let follow = one(&spans, "publish events:otel_payment_taken");
    let confirm = one(&spans, "process events:otel_payment_taken");
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    for (child, parent) in [
        (send, root),
        (charge, send),
        (follow, charge),
        (confirm, follow),
    ] {
        assert_eq!(
            child.parent_span_id,
            parent.span_context.span_id(),
            "`{}` is a child of `{}`",
            child.name,
            parent.name
        );
    }
    assert_eq!(links(charge), vec![id_of(send)]);
    assert_eq!(links(confirm), vec![id_of(follow)]);
    assert!(links(send).is_empty() && links(follow).is_empty());

    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(charge.span_kind, SpanKind::Consumer);
    assert_eq!(attr(send, "messaging.system").as_deref(), Some("redis"));
    assert_eq!(
        attr(send, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr(send, "messaging.operation.name").as_deref(),
        Some("publish")
    );
    assert_eq!(
        attr(send, "messaging.destination.name").as_deref(),
        Some("events:otel_order_placed")
    );
    assert_eq!(attr(send, "messaging.message.id"), Some(receipt.id.clone()));
    assert_eq!(
        attr(charge, "messaging.message.id"),
        Some(receipt.id.clone())
    );
    assert_eq!(
        attr(charge, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(attr(charge, "eventbus.handler").as_deref(), Some("charge"));
    assert_eq!(attr(charge, "eventbus.attempt").as_deref(), Some("1"));
    // The durable hop names its consumer group and the stream entry.
    let entry = attr(follow, "eventbus.entry_id").expect("the entry id of the append");
    assert_eq!(attr(confirm, "eventbus.entry_id"), Some(entry));
    assert_eq!(
        attr(confirm, "messaging.consumer.group.name").as_deref(),
        Some("orders:confirm")
    );
    assert_eq!(attr(charge, "messaging.consumer.group.name"), None);

    // The envelope the last handler got carries the follow-up's span and the request's baggage.
    let (traceparent, baggage) = seen.snapshot().remove(0);
    let follow_cx = follow.span_context.clone();
    let expected = format!("00-{}-{}-01", follow_cx.trace_id(), follow_cx.span_id());
    assert_eq!(traceparent, Some(expected));
    assert_eq!(baggage.as_deref(), Some("tenant=acme"));
    orders.shutdown().await.unwrap();
    billing.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_through_two_services_in_process() {
    one_trace_through_two_services(TestEnv::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_through_two_services_over_redis() {
    let Some(env) = TestEnv::redis() else { return };
    one_trace_through_two_services(env).await;
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "otel_flaky")]
struct Flaky {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_handler_shows_each_attempt() {
    exporter();
    let runs = std::sync::Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let bus = EventBus::builder()
        .handler_with(
            HandlerOptions::new().name("flaky").retry(
                RetryPolicy::attempts(3)
                    .backoff(Duration::from_millis(1), Duration::from_millis(1)),
            ),
            move |_: Flaky| {
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n < 3 {
                        anyhow::bail!("run {n} fails")
                    }
                    Ok(())
                }
            },
        )
        .on_error(|_| {})
        .connect(&TestEnv::memory().url)
        .await
        .unwrap();
    let (root, trace_id) = request("POST /flaky");
    bus.publish(Flaky { n: 1 }).instrument(root).await.unwrap();
    let spans = wait_trace(trace_id, 5).await;
    let send = one(&spans, "publish events:otel_flaky");
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "process events:otel_flaky")
        .map(|s| {
            assert_eq!(s.parent_span_id, send.span_context.span_id());
            assert_eq!(links(s), vec![id_of(send)]);
            let failed = matches!(s.status, Status::Error { .. });
            (attr(s, "eventbus.attempt"), failed, attr(s, "error.type"))
        })
        .collect();
    attempts.sort();
    let failed = (true, Some("error".to_owned()));
    assert_eq!(
        attempts,
        vec![
            (Some("1".to_owned()), failed.0, failed.1.clone()),
            (Some("2".to_owned()), failed.0, failed.1),
            (Some("3".to_owned()), false, None),
        ]
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    bus.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "otel_nightly")]
struct Nightly {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_in_a_trace_of_its_own_links_to_the_producer() {
    exporter();
    let seen = Seen::<Carried>::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .handler_with(
            HandlerOptions::new().name("nightly").own_trace(),
            move |e: Envelope<Nightly>| {
                let s = s.clone();
                async move { s.push(carried(&e)) }
            },
        )
        .connect(&TestEnv::memory().url)
        .await
        .unwrap();
    let (root, trace_id) = request("POST /nightly");
    let receipt = bus
        .publish(Nightly { n: 1 })
        .instrument(root)
        .await
        .unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    let spans = wait_trace(trace_id, 2).await;
    let send = one(&spans, "publish events:otel_nightly");
    assert_eq!(
        names(&spans).len(),
        2,
        "no process span in the request's trace"
    );
    let found = wait_for(WAIT, || {
        exporter().get_finished_spans().unwrap().iter().any(|s| {
            s.name == "process events:otel_nightly"
                && attr(s, "messaging.message.id").as_ref() == Some(&receipt.id)
        })
    })
    .await;
    assert!(found, "the handler's span");
    let all = exporter().get_finished_spans().unwrap();
    let own = all
        .iter()
        .find(|s| {
            attr(s, "messaging.message.id").as_ref() == Some(&receipt.id)
                && s.span_kind == SpanKind::Consumer
        })
        .unwrap();
    assert_ne!(own.span_context.trace_id(), trace_id);
    assert_eq!(own.parent_span_id, SpanId::INVALID);
    assert_eq!(links(own), vec![id_of(send)]);
    bus.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "otel_reminder")]
struct Reminder {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_keeps_the_context_it_was_scheduled_in() {
    exporter();
    let seen = Seen::<Carried>::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .handler(move |e: Envelope<Reminder>| {
            let s = s.clone();
            async move { s.push(carried(&e)) }
        })
        .connect(&TestEnv::memory().url)
        .await
        .unwrap();
    let (root, trace_id) = request("POST /remind");
    bus.publish_after(Reminder { n: 1 }, Duration::from_millis(50))
        .instrument(root)
        .await
        .unwrap();
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    let spans = wait_trace(trace_id, 3).await;
    let create = one(&spans, "schedule events:otel_reminder");
    let process = one(&spans, "process events:otel_reminder");
    assert_eq!(
        attr(create, "messaging.operation.type").as_deref(),
        Some("create")
    );
    assert_eq!(process.parent_span_id, create.span_context.span_id());
    assert_eq!(links(process), vec![id_of(create)]);
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_peers_traceparent_is_honoured() {
    exporter();
    let Some(env) = TestEnv::redis() else { return };
    let Some(python) = python_with_redis() else {
        return;
    };
    let seen = Seen::<Carried>::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .handler(move |e: Envelope<OrderPlaced>| {
            let s = s.clone();
            async move { s.push(carried(&e)) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let events = serde_json::json!([{
        "type": "otel_order_placed",
        "data": {"order": 1},
        "timestamp": "2026-12-07T10:00:00Z",
        "id": "py-otel-1",
        "traceparent": format!("00-{trace}-{parent}-01"),
        "tracestate": "vendor=python",
    }]);
    let child = peer(
        &python,
        &[
            "publish",
            &env.url,
            "events:otel_order_placed",
            &events.to_string(),
        ],
    );
    finish_peer(child).await;
    assert!(wait_for(WAIT, || seen.len() == 1).await);
    let trace_id = TraceId::from_hex(trace).unwrap();
    let spans = wait_trace(trace_id, 1).await;
    let process = one(&spans, "process events:otel_order_placed");
    assert_eq!(process.parent_span_id, SpanId::from_hex(parent).unwrap());
    assert!(process.parent_span_is_remote);
    assert_eq!(
        links(process),
        vec![(trace_id, SpanId::from_hex(parent).unwrap())]
    );
    assert_eq!(process.span_context.trace_state().header(), "vendor=python");
    assert_eq!(
        attr(process, "messaging.message.id").as_deref(),
        Some("py-otel-1")
    );
    bus.shutdown().await.unwrap();
}

/// request → outbox row (committed) → relay → process (fails, dead-lettered) → replay →
/// process: the relay and the replay keep the request's trace, not their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_row_and_its_dead_letter_replay_stay_in_the_request_trace() {
    use eventbus::Outbox;
    use eventbus_suite::orders::{OrderPlaced as Placed, world};
    exporter();
    let Some(w) = world().await else { return };
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handled = Seen::<i64>::new();
    let (f, h) = (failing.clone(), handled.clone());
    let billing = EventBus::builder()
        .service("billing")
        .on_error(|_| {})
        .handler(move |o: Placed| {
            let (f, h) = (f.clone(), h.clone());
            async move {
                if f.load(Ordering::SeqCst) {
                    anyhow::bail!("the card was declined")
                }
                h.push(o.order_id);
                Ok(())
            }
        })
        .connect(&w.redis.url())
        .await
        .unwrap();
    let orders = EventBus::builder()
        .service("orders")
        .outbox(Outbox::postgres(w.pool.clone()).poll_interval(Duration::from_millis(100)))
        .connect(&w.redis.url())
        .await
        .unwrap();
    let (root, trace_id) = request("POST /orders");
    async {
        let mut tx = w.pool.begin().await.unwrap();
        let placed = Placed {
            order_id: 1,
            total: 100,
        };
        orders.outbox().publish(&mut tx, placed).await.unwrap();
        tx.commit().await.unwrap();
    }
    .instrument(root)
    .await;
    let letters = eventbus_suite::poll_until(
        WAIT,
        || billing.dead_letters("order_placed", 10),
        |l| l.as_ref().is_ok_and(|l| !l.is_empty()),
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 1, "one dead letter");
    failing.store(false, Ordering::SeqCst);
    billing.replay_dead_letter(&letters[0]).await.unwrap();
    assert!(wait_for(WAIT, || handled.len() == 1).await);

    let spans = wait_trace(trace_id, 4).await;
    let create = one(&spans, "outbox events:order_placed");
    assert_eq!(
        attr(create, "messaging.operation.type").as_deref(),
        Some("create")
    );
    let failed = runs_under(&spans, "process events:order_placed", create, 2);
    assert_eq!(failed, 1, "the first run failed, the replayed one did not");
    orders.shutdown().await.unwrap();
    billing.shutdown().await.unwrap();
}

/// `examples/tracing.rs` prints one request's span tree, on `memory://` and on a redis-server.
#[test]
fn the_example_prints_the_span_tree_of_one_request() {
    let server = eventbus_suite::redis_server::RedisServer::start_or_skip();
    let on_redis = server.as_ref().map(|s| Some(s.url()));
    let urls: Vec<Option<String>> = std::iter::once(None).chain(on_redis).collect();
    let binary = eventbus_suite::examples::example_binary_with("tracing", &["otel"]);
    for url in &urls {
        let mut cmd = std::process::Command::new(&binary);
        match url {
            Some(url) => cmd.env("REDIS_URL", url),
            None => cmd.env_remove("REDIS_URL"),
        };
        let out = cmd.output().expect("run the example");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{url:?}: {stdout}");
        let tree: Vec<(usize, &str)> = stdout
            .lines()
            .skip(1)
            .map(|l| {
                let depth = (l.len() - l.trim_start().len()) / 2;
                let name = l.trim_start().split(" [").next().unwrap_or_default();
                (depth, name)
            })
            .collect();
        assert_eq!(
            tree,
            vec![
                (0, "POST /orders"),
                (1, "publish events:order_placed"),
                (2, "process events:order_placed"),
                (2, "process events:order_placed"),
                (3, "publish events:payment_taken"),
                (4, "process events:payment_taken"),
            ],
            "{url:?}: {stdout}"
        );
        assert!(
            stdout.contains(
                "eventbus.attempt=1 ERROR returned an error: the card processor timed out"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains("messaging.consumer.group.name=orders:confirm"),
            "{stdout}"
        );
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "otel_invoice", durable)]
struct Invoice {
    n: u32,
}

/// A delayed retry comes back, later, as another attempt in the trace of the publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_retry_comes_back_in_the_publishers_trace() {
    exporter();
    let runs = std::sync::Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let policy = RetryPolicy::attempts(1).then_delayed([Duration::from_millis(50)]);
    let bus = EventBus::builder()
        .service("billing")
        .on_error(|_| {})
        .handler_with(
            HandlerOptions::new().name("invoice").retry(policy),
            move |_: Invoice| {
                let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    anyhow::ensure!(n > 1, "the ledger is locked");
                    Ok(())
                }
            },
        )
        .connect(&TestEnv::memory().url)
        .await
        .unwrap();
    let (root, trace_id) = request("POST /invoices");
    bus.publish(Invoice { n: 1 })
        .instrument(root)
        .await
        .unwrap();
    let spans = wait_trace(trace_id, 4).await;
    let send = one(&spans, "publish events:otel_invoice");
    let failed = runs_under(&spans, "process events:otel_invoice", send, 2);
    assert_eq!(failed, 1, "the first run failed, the delayed one did not");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    bus.shutdown().await.unwrap();
}
