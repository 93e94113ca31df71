//! The JSON Schema of an event's CloudEvents envelope (structured mode), around its data.

use serde_json::{Value, json};

/// The envelope of `event_type` with `data` as its data's schema; `version` is the
/// `dataversion` the bus writes.
pub(super) fn envelope_schema(event_type: &str, version: Option<u32>, data: Value) -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    let dataversion = match version {
        Some(v) => json!({ "type": "string", "const": v.to_string(),
                           "description": "The schema version of the data." }),
        None => text("The schema version of the data."),
    };
    json!({
        "type": "object",
        "description": "A CloudEvents 1.0 envelope in JSON (structured mode). Readers also \
                        accept the plain shape {type, data, timestamp, id}.",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": { "type": "string", "const": "1.0" },
            "id": text("Unique per event (a UUID v7 when the bus makes it)."),
            "source": text("The publishing service."),
            "type": { "type": "string", "const": event_type },
            "time": { "type": "string", "format": "date-time",
                      "description": "When the event happened (RFC 3339, UTC)." },
            "datacontenttype": { "type": "string", "const": "application/json" },
            "dataversion": dataversion,
            "correlationid": text("Ties together the events of one piece of work."),
            "causationid": text("The id of the event that caused this one."),
            "traceparent": text("W3C trace context of the publishing span."),
            "tracestate": text("W3C trace state that goes with traceparent, when the publisher's trace has one."),
            "baggage": text("W3C baggage of the publishing context, when it has any."),
            "data": data,
        },
    })
}
