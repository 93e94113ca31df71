//! The AsyncAPI 3.0 document of a service: the channels it publishes to and receives on,
//! their messages (CloudEvents envelopes around each event's data, with its JSON Schema under
//! the `schema` feature), the delivery model of each, and the server without its password.
//! See [`EventBus::asyncapi`](crate::EventBus::asyncapi).

mod envelope_schema;

use serde_json::{Map, Value, json};

use crate::event::Event;
use crate::handler::ArgKind;
use crate::transport::url::Url;

/// One event type as the document describes it.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    event_type: &'static str,
    /// The channel, or its template (`user:{user_id}:notifications`).
    channel: &'static str,
    durable: bool,
    version: Option<u32>,
    schema: fn() -> Option<Value>,
    /// The handlers (receive) and their consumer groups, for durable types.
    handlers: Vec<(String, Option<String>)>,
}

impl Described {
    /// A type the service publishes.
    pub(crate) fn of<E: Event>() -> Self {
        Described {
            event_type: E::TYPE,
            channel: E::CHANNEL,
            durable: E::DURABLE,
            version: Some(E::VERSION),
            schema: E::data_schema,
            handlers: Vec::new(),
        }
    }

    /// The type a handler takes, if it is a typed event.
    pub(crate) fn handled(kind: &ArgKind, handler: &str, group: Option<&str>) -> Option<Self> {
        match *kind {
            ArgKind::Envelope {
                event_type,
                version,
                durable,
                schema,
                channel,
                ..
            } if !channel.is_empty() => Some(Described {
                event_type,
                channel,
                durable,
                version,
                schema,
                handlers: vec![(handler.to_owned(), group.map(str::to_owned))],
            }),
            _ => None,
        }
    }
}

/// Adds `item` to `list`, merging the handlers of a type listed already.
pub(crate) fn add(list: &mut Vec<Described>, item: Described) {
    match list.iter_mut().find(|d| d.event_type == item.event_type) {
        Some(d) => d.handlers.extend(item.handlers),
        None => list.push(item),
    }
}

/// A name AsyncAPI accepts as a component or channel key (`[A-Za-z0-9._-]`).
fn key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The server object of a Redis URL (already without its password); none for `memory://`.
/// Only the hosts and the path are kept: the query holds options and credentials
/// (`sentinel_password`), not the database.
fn server(url: &str) -> Option<Value> {
    let url = Url::parse(url);
    let scheme = url.scheme()?;
    if scheme == "memory" {
        return None;
    }
    let host = url.hosts();
    let mut server = json!({
        "host": if host.is_empty() { "localhost" } else { host },
        "protocol": "redis",
        "description": format!("Redis ({scheme}://): pub/sub for broadcast events, streams for durable ones."),
    });
    if !url.path().is_empty() && url.path() != "/" {
        server["pathname"] = json!(url.path());
    }
    Some(server)
}

/// The `{name}` placeholders of a channel template, as AsyncAPI channel parameters.
fn parameters(channel: &str) -> Option<Value> {
    let mut params = Map::new();
    let mut rest = channel;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        params.insert(
            name.to_owned(),
            json!({ "description": format!("The event's `{name}` field.") }),
        );
        rest = &rest[open + close + 1..];
    }
    (!params.is_empty()).then_some(Value::Object(params))
}

/// The document's parts, filled one event type at a time.
#[derive(Default)]
struct Parts {
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
    schemas: Map<String, Value>,
}

impl Parts {
    /// The channel and message of `d` (once), and its operation for `action`.
    fn add(&mut self, d: &Described, action: &str) {
        let name = key(d.event_type);
        if !self.channels.contains_key(&name) {
            self.add_channel(d, &name);
        }
        let mut operation = json!({
            "action": action,
            "channel": { "$ref": format!("#/channels/{name}") },
            "messages": [{ "$ref": format!("#/channels/{name}/messages/{name}") }],
        });
        if !d.handlers.is_empty() {
            let handlers: Vec<Value> = d
                .handlers
                .iter()
                .map(|(h, g)| json!({ "handler": h, "consumerGroup": g }))
                .collect();
            operation["x-eventbus-handlers"] = Value::Array(handlers);
        }
        self.operations
            .insert(format!("{action}_{name}"), operation);
    }

    fn add_channel(&mut self, d: &Described, name: &str) {
        let (delivery, how) = if d.durable {
            (
                "durable",
                "a Redis stream read by one consumer group per handler: at least once",
            )
        } else {
            ("pubsub", "Redis pub/sub: every subscriber, at most once")
        };
        let mut channel = json!({
            "address": d.channel,
            "description": format!("`{}` events, on {how}.", d.event_type),
            "messages": { name: { "$ref": format!("#/components/messages/{name}") } },
            "x-eventbus-delivery": delivery,
        });
        if let Some(params) = parameters(d.channel) {
            channel["parameters"] = params;
        }
        self.channels.insert(name.to_owned(), channel);
        let data = self.data_schema(d);
        let mut message = json!({
            "name": d.event_type,
            "title": d.event_type,
            "contentType": "application/cloudevents+json",
            "payload": envelope_schema::envelope_schema(d.event_type, d.version, data),
        });
        if let Some(v) = d.version {
            message["x-eventbus-dataversion"] = json!(v.to_string());
        }
        self.messages.insert(name.to_owned(), message);
    }

    /// The data's schema, its shared definitions moved into `components.schemas`.
    fn data_schema(&mut self, d: &Described) -> Value {
        let Some(mut schema) = (d.schema)() else {
            return json!({
                "description": "The event's data; build with eventbus's `schema` feature for its JSON Schema."
            });
        };
        if let Some(defs) = schema
            .as_object_mut()
            .and_then(|m| m.remove("components"))
            .and_then(|mut c| c.as_object_mut().and_then(|c| c.remove("schemas")))
            .and_then(|s| s.as_object().cloned())
        {
            self.schemas.extend(defs);
        }
        schema
    }
}

/// The AsyncAPI 3.0 document of `service`, which publishes `sends` and receives `receives`,
/// connected to `url` (without its password) when known.
pub(crate) fn document(
    service: &str,
    url: Option<&str>,
    sends: &[Described],
    receives: &[Described],
) -> Value {
    let mut parts = Parts::default();
    for d in sends {
        parts.add(d, "send");
    }
    for d in receives {
        parts.add(d, "receive");
    }
    let mut doc = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": service,
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The events the `{service}` service publishes and receives through eventbus."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": parts.channels,
        "operations": parts.operations,
        "components": { "messages": parts.messages, "schemas": parts.schemas },
    });
    if let Some(server) = url.and_then(server) {
        doc["servers"] = json!({ "redis": server });
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_carry_host_and_database_only() {
        let s = server("redis://***@cache.internal:6380/2").unwrap();
        assert_eq!(s["host"], "cache.internal:6380");
        assert_eq!(s["pathname"], "/2");
        assert_eq!(s["protocol"], "redis");
        assert!(server("memory://hub").is_none());
        let s = server("redis+sentinel://h:1,h:2/m?sentinel_password=***#x").unwrap();
        assert_eq!(s["host"], "h:1,h:2");
        assert_eq!(s["pathname"], "/m");
    }

    #[test]
    fn templates_give_parameters_and_keys_are_valid() {
        let p = parameters("user:{user_id}:notes:{kind}").unwrap();
        assert_eq!(p.as_object().unwrap().len(), 2);
        assert!(parameters("events:order_placed").is_none());
        assert_eq!(key("a b/c"), "a_b_c");
    }
}
