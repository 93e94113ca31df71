//! The trace context that travels with events ([`EventContext`]) and is inherited by the
//! publishes of a handler; described in the crate documentation's Observability section.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::envelope::{Envelope, RawEnvelope};

#[cfg(feature = "otel")]
mod otel;
mod spans;

pub(crate) use spans::{Process, Produce, Received, failed, producer, publish_failed};
use spans::{describe, process};

tokio::task_local! {
    static CURRENT: Option<EventContext>;
}

/// The event a handler is running for: its id, correlation id and trace context, which a
/// publish from inside the handler inherits (see [Observability](crate#observability)).
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

/// `fut` inside `span`; as it is when the span is disabled (no subscriber wants it): entering
/// and leaving a disabled span still costs instructions on every event (skipping that and the
/// disabled spans' fields took 5% off the `memory://` path's instructions).
pub(crate) fn within<F: Future>(span: &tracing::Span, fut: F) -> Either<Instrumented<F>, F> {
    if span.is_disabled() {
        Either::Right(fut)
    } else {
        Either::Left(fut.instrument(span.clone()))
    }
}

/// Stamps an envelope about to be published or stored under its producer `span`: the
/// correlation, causation and trace context of the event being handled where the publisher set
/// none; with the `otel` feature, the span's own trace context (see `otel::inject`). The span
/// records the trace context and correlation the envelope leaves with.
pub(crate) fn stamp<E>(envelope: &mut Envelope<E>, span: &tracing::Span) {
    #[cfg(feature = "otel")]
    let explicit = envelope.traceparent.is_some();
    inherit(envelope);
    if span.is_disabled() {
        return;
    }
    #[cfg(feature = "otel")]
    otel::inject(envelope, span, explicit);
    span.record("eventbus.traceparent", envelope.traceparent.as_deref());
    span.record(
        "messaging.message.conversation_id",
        envelope.correlationid.as_deref(),
    );
}

/// The span of a handler attempt; when it is enabled, with what `received` says of the message
/// and, with the `otel` feature, placed in the producer's trace (as a child and a link, or a
/// link only with `own_trace`).
pub(crate) fn process_span<'a>(
    p: &Process<'_>,
    received: impl FnOnce() -> (Received<'a>, Option<&'a Envelope<()>>),
    own_trace: bool,
) -> tracing::Span {
    let span = process(p);
    if span.is_disabled() {
        return span;
    }
    let (r, header) = received();
    describe(&span, &r);
    #[cfg(feature = "otel")]
    if let Some(header) = header {
        otel::follow(&span, header, own_trace);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (header, own_trace);
    span
}

/// Fills the trace context, correlation and causation of an envelope published from inside a
/// handler from the event being handled, where the publisher set none of them.
fn inherit<E>(envelope: &mut Envelope<E>) {
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
pub(crate) fn is_valid_traceparent(value: &str) -> bool {
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
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "not a trace",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
