//! OpenTelemetry trace context (the `otel` feature): a producer span's context written into the
//! envelope as W3C `traceparent`, `tracestate` and `baggage`, and read back as the parent of
//! (and a link from) a handler run's span. The formats are the SDK's W3C propagators'.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use serde_json::Value;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::envelope::Envelope;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const BAGGAGE: &str = "baggage";

/// Makes `span`'s context the envelope's trace context. The span's parent is the current span
/// when that one is traced; otherwise, or when the publisher set a `traceparent` itself
/// (`explicit`), the context the envelope carries. Without an OpenTelemetry layer the envelope
/// is left as it is.
pub(crate) fn inject<E>(envelope: &mut Envelope<E>, span: &Span, explicit: bool) {
    if envelope.traceparent.is_some() && (explicit || !is_traced(&Span::current())) {
        let carried = extract(&Carrier::of(envelope), true);
        let _ = span.set_parent(carried);
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut out = Written::default();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    BaggagePropagator::new().inject_context(&cx, &mut out);
    envelope.traceparent = out.traceparent;
    // A trace state belongs to its trace: one the new context lacks is dropped.
    envelope.extensions.remove(TRACESTATE);
    for (name, value) in [(TRACESTATE, out.tracestate), (BAGGAGE, out.baggage)] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            envelope
                .extensions
                .insert(name.to_owned(), Value::String(v));
        }
    }
}

/// Places a handler run's span in the producer's trace: a link to the producer's span always
/// (as the messaging conventions require), and that span as its parent unless the handler runs
/// in a trace of its own (`own_trace`). Baggage is kept either way.
pub(crate) fn follow(span: &Span, header: &Envelope<()>, own_trace: bool) {
    let carrier = Carrier::of(header);
    let producer = extract(&carrier, true);
    let producer_span = producer.span().span_context().clone();
    if !producer_span.is_valid() {
        return;
    }
    span.add_link(producer_span);
    let parent = if own_trace {
        extract(&carrier, false)
    } else {
        producer
    };
    let _ = span.set_parent(parent);
}

/// Whether `span` is part of an OpenTelemetry trace.
fn is_traced(span: &Span) -> bool {
    span.context().span().span_context().is_valid()
}

/// The context an envelope carries: its baggage, and its trace context when `with_trace`.
fn extract(carrier: &Carrier<'_>, with_trace: bool) -> Context {
    let cx = BaggagePropagator::new().extract(carrier);
    if with_trace {
        TraceContextPropagator::new().extract_with_context(&cx, carrier)
    } else {
        cx
    }
}

/// The trace attributes of an envelope, read as text-map headers.
struct Carrier<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
    baggage: Option<&'a str>,
}

impl<'a> Carrier<'a> {
    fn of<E>(envelope: &'a Envelope<E>) -> Self {
        let text = |name| envelope.extensions.get(name).and_then(Value::as_str);
        Carrier {
            traceparent: envelope.traceparent.as_deref(),
            tracestate: text(TRACESTATE),
            baggage: text(BAGGAGE),
        }
    }
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            BAGGAGE => self.baggage,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE, BAGGAGE]
    }
}

/// The trace attributes the propagators write.
#[derive(Default)]
struct Written {
    traceparent: Option<String>,
    tracestate: Option<String>,
    baggage: Option<String>,
}

impl Injector for Written {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            BAGGAGE => self.baggage = Some(value),
            _ => {}
        }
    }
}
