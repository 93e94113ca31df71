//! The spans the bus opens, named and attributed after OpenTelemetry's messaging conventions:
//! a producer span for each publish, batch, schedule and outbox row, and a consumer span for
//! each handler attempt.

use tracing::Span;
use tracing::field::Empty;

/// What a producer span stands for: its `messaging.operation.name`, which also starts its
/// name (`publish events:user_created`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Produce {
    /// `publish` / `publish_envelope`: sent now.
    Publish,
    /// `publish_all`: one span for the batch.
    PublishAll,
    /// `publish_after` / `publish_at`: stored in the schedule, sent when due.
    Schedule,
    /// An outbox row: sent by the relay once the transaction commits.
    #[cfg(feature = "postgres")]
    Outbox,
}

impl Produce {
    fn name(self) -> &'static str {
        match self {
            Produce::Publish => "publish",
            Produce::PublishAll => "publish_all",
            Produce::Schedule => "schedule",
            #[cfg(feature = "postgres")]
            Produce::Outbox => "outbox",
        }
    }

    /// `send` for what goes to the transport now, `create` for what is stored to be sent later.
    fn operation_type(self) -> &'static str {
        match self {
            Produce::Publish | Produce::PublishAll => "send",
            #[cfg(feature = "postgres")]
            Produce::Outbox => "create",
            Produce::Schedule => "create",
        }
    }
}

/// The span of a producer operation on `channel` (the first channel of a batch). The fields
/// left empty are recorded once known: the trace context and correlation after the envelope
/// is stamped, the stream entry id after an append, the batch size, the error.
pub(crate) fn producer(op: Produce, channel: &str, event_type: &str, id: &str) -> Span {
    tracing::info_span!(
        "eventbus.publish",
        otel.name = %format_args!("{} {channel}", op.name()),
        otel.kind = "producer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = "redis",
        messaging.operation.type = op.operation_type(),
        messaging.operation.name = op.name(),
        messaging.destination.name = %channel,
        messaging.message.id = %id,
        messaging.message.conversation_id = Empty,
        messaging.batch.message_count = Empty,
        eventbus.event_type = event_type,
        eventbus.traceparent = Empty,
        eventbus.entry_id = Empty,
        error.type = Empty,
    )
}

/// What a consumer span is about: the delivery's channel and handler, and the attempt.
pub(crate) struct Process<'a> {
    pub(crate) channel: &'a str,
    pub(crate) handler: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) attempt: u32,
}

/// What a consumer span says of the message, recorded only when the span is enabled: reading
/// the envelope's attributes is the first touch of the publisher's memory on this core.
pub(crate) struct Received<'a> {
    pub(crate) id: &'a str,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) traceparent: Option<&'a str>,
    pub(crate) group: Option<&'a str>,
    pub(crate) entry_id: Option<&'a str>,
}

/// The span of one handler attempt; the message's fields are recorded by [`describe`].
pub(crate) fn process(p: &Process<'_>) -> Span {
    tracing::info_span!(
        "eventbus.handle",
        otel.name = %format_args!("process {}", p.channel),
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = "redis",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %p.channel,
        messaging.message.id = Empty,
        messaging.message.conversation_id = Empty,
        messaging.consumer.group.name = Empty,
        eventbus.traceparent = Empty,
        eventbus.entry_id = Empty,
        eventbus.handler = p.handler,
        eventbus.event_type = p.event_type,
        eventbus.attempt = p.attempt,
        error.type = Empty,
    )
}

/// Records what a consumer span says of its message.
pub(crate) fn describe(span: &Span, r: &Received<'_>) {
    span.record("messaging.message.id", r.id);
    span.record("messaging.message.conversation_id", r.correlation_id);
    span.record("messaging.consumer.group.name", r.group);
    span.record("eventbus.traceparent", r.traceparent);
    span.record("eventbus.entry_id", r.entry_id);
}

/// Marks a producer span as failed with a publish error, its kind as `error.type`.
pub(crate) fn publish_failed(span: &Span, e: &crate::error::PublishError) {
    failed(span, &format!("{:?}", e.kind()), e);
}

/// Marks a span as failed with `kind` (`error.type`) and `why` (an error status with that
/// description, for OpenTelemetry).
pub(crate) fn failed(span: &Span, kind: &str, why: &dyn std::fmt::Display) {
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", tracing::field::display(why));
}
