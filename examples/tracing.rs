//! One request traced with OpenTelemetry through two services, printed as its span tree.
//!
//! `orders` handles `POST /orders` (a root span, as an HTTP server's instrumentation would open
//! it) and publishes `OrderPlaced`; `billing` charges it (the card processor refuses the first
//! attempt, the retry goes through) and publishes `PaymentTaken`, which `orders` confirms. The
//! spans go to the OpenTelemetry SDK's in-memory exporter through tracing-opentelemetry; a
//! service would install an OTLP exporter instead, and Jaeger or Tempo would show the same tree.
//!
//! ```sh
//! cargo run --example tracing --features otel                                  # memory://
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example tracing --features otel # a redis-server
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use eventbus::{Event, EventBus, HandlerOptions, RetryPolicy};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed")]
struct OrderPlaced {
    order_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "payment_taken", durable)]
struct PaymentTaken {
    order_id: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("shop")))
        .init();

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://tracing".to_owned());
    let (orders, billing, confirmed) = services(&url).await?;

    let request = tracing::info_span!("request", otel.name = "POST /orders", otel.kind = "server");
    let trace_id = request.context().span().span_context().trace_id();
    orders
        .publish(OrderPlaced { order_id: 42 })
        .instrument(request)
        .await?;
    tokio::time::timeout(Duration::from_secs(10), confirmed.notified())
        .await
        .context("the payment was not confirmed within 10 s")?;
    orders.shutdown().await?;
    billing.shutdown().await?;

    let spans = exporter.get_finished_spans()?;
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    println!("trace {trace_id}: {} spans", spans.len());
    print_tree(&spans);
    Ok(())
}

/// `orders` (confirms payments) and `billing` (charges orders, the first attempt refused).
async fn services(url: &str) -> anyhow::Result<(EventBus, EventBus, Arc<Notify>)> {
    let attempts = Arc::new(AtomicU32::new(0));
    let retry =
        RetryPolicy::attempts(2).backoff(Duration::from_millis(5), Duration::from_millis(5));
    let billing = EventBus::builder()
        .service("billing")
        .on_error(|_| {})
        .handler_with(
            HandlerOptions::new().name("charge").retry(retry),
            move |order: OrderPlaced, bus: EventBus| {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    anyhow::ensure!(attempt > 1, "the card processor timed out");
                    bus.publish(PaymentTaken {
                        order_id: order.order_id,
                    })
                    .await?;
                    Ok(())
                }
            },
        )
        .connect(url)
        .await?;
    let confirmed = Arc::new(Notify::new());
    let done = confirmed.clone();
    let orders = EventBus::builder()
        .service("orders")
        .handler_with(
            HandlerOptions::new().name("confirm"),
            move |_: PaymentTaken| {
                let done = done.clone();
                async move { done.notify_one() }
            },
        )
        .connect(url)
        .await?;
    Ok((orders, billing, confirmed))
}

/// Prints the spans as a tree by parent, each with its kind, duration, the attributes that say
/// what it did, its status and its links.
fn print_tree(spans: &[SpanData]) {
    let mut children: HashMap<SpanId, Vec<&SpanData>> = HashMap::new();
    for span in spans {
        children.entry(span.parent_span_id).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_time);
    }
    let ids: Vec<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
    let roots = spans.iter().filter(|s| !ids.contains(&s.parent_span_id));
    for root in roots {
        print_span(root, &children, 0);
    }
}

fn print_span(span: &SpanData, children: &HashMap<SpanId, Vec<&SpanData>>, depth: usize) {
    let kind = match span.span_kind {
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Client => "client",
        SpanKind::Internal => "internal",
    };
    let took = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    let mut line = format!(
        "{}{} [{kind}, {} µs]",
        "  ".repeat(depth),
        span.name,
        took.as_micros()
    );
    for key in [
        "eventbus.handler",
        "eventbus.attempt",
        "messaging.consumer.group.name",
    ] {
        if let Some(kv) = span.attributes.iter().find(|kv| kv.key.as_str() == key) {
            line.push_str(&format!(" {key}={}", kv.value));
        }
    }
    if let Status::Error { description } = &span.status {
        line.push_str(&format!(" ERROR {description}"));
    }
    for link in span.links.iter() {
        line.push_str(&format!(" (links to {})", link.span_context.span_id()));
    }
    println!("{line}  span {}", span.span_context.span_id());
    for child in children
        .get(&span.span_context.span_id())
        .into_iter()
        .flatten()
    {
        print_span(child, children, depth + 1);
    }
}
