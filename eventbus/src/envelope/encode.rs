//! Writing the envelope: a `Serialize` over borrowed parts, streamed by serde_json into the
//! output buffer, attributes in wire order.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::time::{self, TIME_LEN};
use super::{DEFAULT_SOURCE, EncodeError, Envelope, JSON_CONTENT_TYPE, SPECVERSION};

/// The `dataversion` to write.
#[derive(Clone, Copy)]
pub(super) enum Version<'a> {
    /// A typed event's `E::VERSION`, written as a decimal string without allocating.
    Number(u32),
    /// A version held as text.
    Text(&'a str),
}

impl Serialize for Version<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Version::Number(n) => serializer.collect_str(&n),
            Version::Text(s) => serializer.serialize_str(s),
        }
    }
}

/// The envelope as written: `header`'s attributes with `data`, `event_type` and `version`.
struct Wire<'a, H, D: ?Sized> {
    header: &'a Envelope<H>,
    data: &'a D,
    event_type: &'a str,
    version: Option<Version<'a>>,
    time: &'a str,
}

impl<H, D: Serialize + ?Sized> Serialize for Wire<'_, H, D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let h = self.header;
        let source = if h.source.is_empty() {
            DEFAULT_SOURCE
        } else {
            &h.source
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", SPECVERSION)?;
        map.serialize_entry("id", &h.id)?;
        map.serialize_entry("source", source)?;
        map.serialize_entry("type", self.event_type)?;
        map.serialize_entry("time", self.time)?;
        map.serialize_entry(
            "datacontenttype",
            h.datacontenttype.as_deref().unwrap_or(JSON_CONTENT_TYPE),
        )?;
        map.serialize_entry("data", self.data)?;
        if let Some(version) = &self.version {
            map.serialize_entry("dataversion", version)?;
        }
        if let Some(id) = &h.correlationid {
            map.serialize_entry("correlationid", id)?;
        }
        if let Some(id) = &h.causationid {
            map.serialize_entry("causationid", id)?;
        }
        if let Some(traceparent) = &h.traceparent {
            map.serialize_entry("traceparent", traceparent)?;
        }
        for (name, value) in &h.extensions {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Appends the envelope to `buf`; on error `buf` is left as it was.
pub(super) fn write<H, D: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    header: &Envelope<H>,
    data: &D,
    event_type: &str,
    version: Option<Version<'_>>,
) -> Result<(), EncodeError> {
    let mut time_buf = [0; TIME_LEN];
    let time = time::format(&header.time, &mut time_buf).ok_or_else(|| {
        EncodeError::custom("`time` is outside the years 0000 to 9999 that RFC 3339 can write")
    })?;
    let wire = Wire {
        header,
        data,
        event_type,
        version,
        time,
    };
    let start = buf.len();
    serde_json::to_writer(&mut *buf, &wire).map_err(|e| {
        buf.truncate(start);
        EncodeError(e)
    })
}
