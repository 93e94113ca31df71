//! The exported metrics' names, kinds, units and descriptions.

use metrics::Unit;

/// The metric names, with their kind, unit and description.
pub(super) const DESCRIPTIONS: &[(&str, Kind, Unit, &str)] = &[
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
        "eventbus_skipped_total",
        Kind::Counter,
        Unit::Count,
        "Envelopes on a shared topic whose type or version no handler there takes.",
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
        "eventbus_deferred_total",
        Kind::Counter,
        Unit::Count,
        "Durable entries handed off for a delayed retry.",
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
        "eventbus_redelivered_total",
        Kind::Counter,
        Unit::Count,
        "Durable entries delivered more than once.",
    ),
    (
        "eventbus_claimed_total",
        Kind::Counter,
        Unit::Count,
        "Durable entries claimed from another consumer.",
    ),
    (
        "eventbus_duplicates_total",
        Kind::Counter,
        Unit::Count,
        "Durable events skipped as already handled by the group (de-duplication).",
    ),
    (
        "eventbus_trimmed_total",
        Kind::Counter,
        Unit::Count,
        "Durable entries trimmed from their stream while pending.",
    ),
    (
        "eventbus_group_pending",
        Kind::Gauge,
        Unit::Count,
        "Entries delivered to a consumer group and not acknowledged.",
    ),
    (
        "eventbus_group_lag",
        Kind::Gauge,
        Unit::Count,
        "Entries in a stream not yet delivered to a consumer group.",
    ),
    (
        "eventbus_group_consumers",
        Kind::Gauge,
        Unit::Count,
        "Consumers known to a consumer group.",
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
        "eventbus_outbox_depth",
        Kind::Gauge,
        Unit::Count,
        "Rows waiting in the outbox (counted up to 100 000).",
    ),
    (
        "eventbus_outbox_oldest_age_seconds",
        Kind::Gauge,
        Unit::Seconds,
        "How long the first row in the outbox has waited (whole seconds).",
    ),
    (
        "eventbus_outbox_relayed_total",
        Kind::Counter,
        Unit::Count,
        "Outbox rows this bus's relay published and removed.",
    ),
    (
        "eventbus_outbox_poisoned_total",
        Kind::Counter,
        Unit::Count,
        "Outbox rows this bus's relay moved to the poison table.",
    ),
    (
        "eventbus_outbox_relay_active",
        Kind::Gauge,
        Unit::Count,
        "1 when this bus's relay is the active one of its outbox.",
    ),
    (
        "eventbus_scheduled_total",
        Kind::Counter,
        Unit::Count,
        "Events this bus scheduled for later.",
    ),
    (
        "eventbus_scheduled_fired_total",
        Kind::Counter,
        Unit::Count,
        "Scheduled events this bus's mover sent when they were due.",
    ),
    (
        "eventbus_scheduled_mover_errors_total",
        Kind::Counter,
        Unit::Count,
        "Rounds of this bus's mover of scheduled events that failed.",
    ),
    (
        "eventbus_scheduled_waiting",
        Kind::Gauge,
        Unit::Count,
        "Scheduled events (and delayed retries) waiting in a queue, at the mover's last look.",
    ),
    (
        "eventbus_scheduled_overdue_seconds",
        Kind::Gauge,
        Unit::Seconds,
        "How long the first event of a queue has been due and not sent (whole seconds).",
    ),
    (
        "eventbus_scheduled_lateness_seconds",
        Kind::Histogram,
        Unit::Seconds,
        "How late after their due time scheduled events were sent (by the store's clock).",
    ),
    (
        "eventbus_handler_duration_seconds",
        Kind::Histogram,
        Unit::Seconds,
        "Duration of successful handler runs (power-of-two bucket upper bounds).",
    ),
];

/// What kind of series a metric is.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}
