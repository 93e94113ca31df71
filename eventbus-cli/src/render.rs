//! How `tail` shows an envelope or a decode failure: one JSON line, or a readable block.

use eventbus::Envelope;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::incoming::Incoming;
use crate::style::Palette;

/// The output format of `tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line.
    Json,
    /// A multi-line block per envelope.
    Pretty,
}

/// Turns messages into output text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    format: Format,
    palette: Palette,
}

impl Printer {
    /// A printer in `format`, colouring pretty output with `palette`.
    pub(crate) fn new(format: Format, palette: Palette) -> Self {
        Printer { format, palette }
    }

    /// An envelope: `{"channel", "entry_id"?, "envelope"}` as JSON, or a block.
    pub(crate) fn envelope(&self, from: &Incoming, envelope: &Envelope<Value>) -> String {
        match self.format {
            Format::Json => json_line(from, envelope),
            Format::Pretty => self.block(from, envelope),
        }
    }

    /// A message that is not an envelope: `{"channel", "entry_id"?, "error", "raw"}` as JSON,
    /// or a line saying why with the raw text under it.
    pub(crate) fn failure(&self, from: &Incoming, reason: &str) -> String {
        match self.format {
            Format::Json => {
                let mut line = origin(from);
                line.insert("error".into(), json!(reason));
                line.insert("raw".into(), json!(from.text()));
                Value::Object(line).to_string()
            }
            Format::Pretty => format!(
                "{} on {}: {reason}\n  raw: {}\n",
                self.palette.error("decode failure"),
                where_from(from),
                from.text()
            ),
        }
    }

    fn block(&self, from: &Incoming, envelope: &Envelope<Value>) -> String {
        let p = self.palette;
        let mut out = format!(
            "{}  {}  {}\n",
            p.title(envelope.event_type()),
            where_from(from),
            p.dim(
                &envelope
                    .time()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            )
        );
        let mut field = |name: &str, value: &str| {
            out.push_str(&format!("  {} {value}\n", p.dim(&format!("{name:<14}"))));
        };
        field("id", envelope.id());
        field("source", envelope.source());
        for (name, value) in optional_attributes(envelope) {
            field(&name, &value);
        }
        let data = serde_json::to_string_pretty(envelope.data()).unwrap_or_default();
        field("data", &data.replace('\n', &format!("\n{:17}", "")));
        out
    }
}

/// One line of `--json` output: the envelope as the bus encodes it, attributes in wire order.
#[derive(Serialize)]
struct Line<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_id: Option<&'a str>,
    envelope: &'a RawValue,
}

fn json_line(from: &Incoming, envelope: &Envelope<Value>) -> String {
    let encoded = envelope
        .encode_untyped()
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| RawValue::from_string(text).ok());
    let Some(wire) = encoded else {
        return serde_json::to_string(envelope).unwrap_or_default();
    };
    let line = Line {
        channel: &from.channel,
        entry_id: from.entry_id.as_deref(),
        envelope: &wire,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// `channel` and, for a stream entry, `entry_id`.
fn origin(from: &Incoming) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("channel".into(), json!(from.channel));
    if let Some(id) = &from.entry_id {
        line.insert("entry_id".into(), json!(id));
    }
    line
}

fn where_from(from: &Incoming) -> String {
    match &from.entry_id {
        Some(id) => format!("{} #{id}", from.channel),
        None => from.channel.clone(),
    }
}

/// The attributes an envelope may have beyond id, source, type and time, when present.
fn optional_attributes(envelope: &Envelope<Value>) -> Vec<(String, String)> {
    let known = [
        ("dataversion", envelope.dataversion()),
        ("correlationid", envelope.correlation_id()),
        ("causationid", envelope.causation_id()),
        ("traceparent", envelope.traceparent()),
    ];
    let mut out: Vec<(String, String)> = known
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    if envelope.datacontenttype() != "application/json" {
        out.push(("datacontenttype".into(), envelope.datacontenttype().into()));
    }
    for (name, value) in envelope.extensions() {
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        out.push((name.clone(), text));
    }
    out
}
