//! Writing the envelope. [`Header`] checks the attributes and walks them in wire order into a
//! [`Sink`]: the byte writer behind `encode` ([`Bytes`]), which writes straight into the output
//! buffer (strings go through a fast path when they need no escaping and through serde_json
//! otherwise, so the output is exactly serde_json's; no `serde_json::Value` is built), or any
//! serde map ([`Map`]), which is how `Envelope` implements `Serialize`. `data` goes through
//! [`Finite`] in both, so a non-finite float fails in the same pass; only then is `data`
//! serialized a second time, to name where.

use std::fmt::Display;

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::finite::{self, Checked, Finite};
use super::time::{self, TIME_LEN};
use chrono::{DateTime, Utc};

use super::EncodeError;
use super::spec::{DEFAULT_SOURCE, JSON_CONTENT_TYPE, SPECVERSION};

/// The `dataversion` to write.
#[derive(Clone, Copy)]
pub(super) enum Version<'a> {
    /// A typed event's `E::VERSION`.
    Number(u32),
    /// A version held as text.
    Text(&'a str),
}

/// Where the members go, in order.
trait Sink {
    type Error;

    /// A member whose value is a string.
    fn text(&mut self, name: &'static str, value: &str) -> Result<(), Self::Error>;

    /// The `data` member.
    fn data<D: Serialize + ?Sized>(&mut self, data: &D) -> Result<(), Self::Error>;

    /// An extension attribute.
    fn extension(&mut self, name: &str, value: &Value) -> Result<(), Self::Error>;
}

/// What an envelope holds besides `type`, `dataversion` and `data`, as the encoder reads it.
pub(super) struct Attributes<'a> {
    pub(super) id: &'a str,
    /// Empty for the default source.
    pub(super) source: &'a str,
    pub(super) time: &'a DateTime<Utc>,
    pub(super) datacontenttype: Option<&'a str>,
    /// `correlationid`, `causationid` and `traceparent`, where set.
    pub(super) optional: [(&'static str, Option<&'a str>); 3],
    pub(super) extensions: &'a serde_json::Map<String, Value>,
}

/// The attributes of an envelope, checked and ready to write.
struct Header<'a> {
    id: &'a str,
    source: &'a str,
    event_type: &'a str,
    time: &'a str,
    datacontenttype: &'a str,
    version: Option<Version<'a>>,
    optional: [(&'static str, Option<&'a str>); 3],
    extensions: &'a serde_json::Map<String, Value>,
}

impl<'a> Header<'a> {
    /// Checks what a receiver would refuse: an empty `id` or `type`, a time RFC 3339 cannot
    /// write. `time_buf` holds the formatted time.
    fn new(
        h: &Attributes<'a>,
        event_type: &'a str,
        version: Option<Version<'a>>,
        time_buf: &'a mut [u8; TIME_LEN],
    ) -> Result<Self, EncodeError> {
        if h.id.is_empty() {
            return Err(EncodeError::new("id", "must not be empty"));
        }
        if event_type.is_empty() {
            return Err(EncodeError::new("type", "must not be empty"));
        }
        let time = time::format(h.time, time_buf).ok_or_else(|| {
            EncodeError::new(
                "time",
                "outside the years 0000 to 9999 that RFC 3339 can write",
            )
        })?;
        Ok(Header {
            id: h.id,
            source: if h.source.is_empty() {
                DEFAULT_SOURCE
            } else {
                h.source
            },
            event_type,
            time,
            datacontenttype: h.datacontenttype.unwrap_or(JSON_CONTENT_TYPE),
            version,
            optional: h.optional,
            extensions: h.extensions,
        })
    }

    /// The number of members written.
    fn len(&self) -> usize {
        7 + usize::from(self.version.is_some())
            + self.optional.iter().filter(|(_, v)| v.is_some()).count()
            + self.extensions.len()
    }

    /// Writes the members in wire order.
    #[inline]
    fn write<S: Sink, D: Serialize + ?Sized>(
        &self,
        sink: &mut S,
        data: &D,
    ) -> Result<(), S::Error> {
        sink.text("specversion", SPECVERSION)?;
        sink.text("id", self.id)?;
        sink.text("source", self.source)?;
        sink.text("type", self.event_type)?;
        sink.text("time", self.time)?;
        sink.text("datacontenttype", self.datacontenttype)?;
        sink.data(data)?;
        match self.version {
            Some(Version::Number(n)) => {
                let mut digits = [0; 10];
                sink.text("dataversion", decimal(&mut digits, n))?;
            }
            Some(Version::Text(text)) => sink.text("dataversion", text)?,
            None => {}
        }
        for (name, value) in self.optional {
            if let Some(value) = value {
                sink.text(name, value)?;
            }
        }
        for (name, value) in self.extensions {
            sink.extension(name, value)?;
        }
        Ok(())
    }
}

/// Appends the envelope to `buf`; on error `buf` is left as it was.
pub(super) fn write<D: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    h: &Attributes<'_>,
    data: &D,
    event_type: &str,
    version: Option<Version<'_>>,
) -> Result<(), EncodeError> {
    let mut time_buf = [0; TIME_LEN];
    let header = Header::new(h, event_type, version, &mut time_buf)?;
    let start = buf.len();
    buf.reserve(192 + h.id.len() + header.source.len() + event_type.len());
    let mut sink = Bytes { buf, sep: b'{' };
    let result = header.write(&mut sink, data);
    match result {
        Ok(()) => {
            sink.buf.push(b'}');
            Ok(())
        }
        Err(e) => {
            sink.buf.truncate(start);
            Err(e)
        }
    }
}

/// Serializes the envelope as a map of its members, in wire order.
pub(super) fn serialize<D: Serialize + ?Sized, S: Serializer>(
    serializer: S,
    h: &Attributes<'_>,
    data: &D,
    event_type: &str,
    version: Option<Version<'_>>,
) -> Result<S::Ok, S::Error> {
    let mut time_buf = [0; TIME_LEN];
    let header = Header::new(h, event_type, version, &mut time_buf).map_err(S::Error::custom)?;
    let mut sink = Map(serializer.serialize_map(Some(header.len()))?);
    header.write(&mut sink, data)?;
    sink.0.end()
}

/// The byte writer behind `encode`.
struct Bytes<'b> {
    buf: &'b mut Vec<u8>,
    /// What goes before the next member: `{`, then `,`.
    sep: u8,
}

impl Bytes<'_> {
    /// Starts a member whose name needs no escaping (the attributes' own).
    #[inline]
    fn member(&mut self, name: &'static str) {
        self.buf.push(self.sep);
        self.sep = b',';
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn name(&mut self, name: &str) -> Result<(), serde_json::Error> {
        self.buf.push(self.sep);
        self.sep = b',';
        string(self.buf, name)?;
        self.buf.push(b':');
        Ok(())
    }
}

impl Sink for Bytes<'_> {
    type Error = EncodeError;

    #[inline]
    fn text(&mut self, name: &'static str, value: &str) -> Result<(), EncodeError> {
        self.member(name);
        string(self.buf, value).map_err(|e| EncodeError::new(name, e.to_string()))
    }

    #[inline]
    fn data<D: Serialize + ?Sized>(&mut self, data: &D) -> Result<(), EncodeError> {
        self.member("data");
        data.serialize(Checked::new(
            &mut serde_json::Serializer::new(&mut *self.buf),
            None,
        ))
        .map_err(|e| data_error(data, e))
    }

    fn extension(&mut self, name: &str, value: &Value) -> Result<(), EncodeError> {
        self.name(name)
            .and_then(|()| serde_json::to_writer(&mut *self.buf, value))
            .map_err(|e| EncodeError::new(name, e.to_string()))
    }
}

/// Any serde map: how `Envelope` implements `Serialize`.
struct Map<M>(M);

impl<M: SerializeMap> Sink for Map<M> {
    type Error = M::Error;

    fn text(&mut self, name: &'static str, value: &str) -> Result<(), M::Error> {
        self.0.serialize_entry(name, value)
    }

    fn data<D: Serialize + ?Sized>(&mut self, data: &D) -> Result<(), M::Error> {
        self.0
            .serialize_entry("data", &Finite::new(data))
            .map_err(|e| M::Error::custom(data_error(data, e)))
    }

    fn extension(&mut self, name: &str, value: &Value) -> Result<(), M::Error> {
        self.0.serialize_entry(name, value)
    }
}

/// The error for `data` that failed to serialize, naming the value at fault (found by
/// serializing again, into nothing).
fn data_error<D: Serialize + ?Sized>(data: &D, error: impl Display) -> EncodeError {
    let field = finite::path_of_error(data);
    EncodeError::new(field.as_deref().unwrap_or("data"), error.to_string())
}

/// `n` in decimal, in `digits`.
fn decimal(digits: &mut [u8; 10], mut n: u32) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at..]).unwrap_or("0")
}

/// Writes `s` as a JSON string, exactly as serde_json does.
fn string(buf: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    // serde_json escapes `"`, `\` and the control characters below 0x20, nothing else.
    // A fold rather than `any`: no early exit, so the scan vectorizes.
    let needs_escape = s.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        return serde_json::to_writer(&mut *buf, s);
    }
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 1, 9, 10, 42, 1000, u32::MAX] {
            assert_eq!(decimal(&mut [0; 10], n), n.to_string());
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote\" backslash\\ slash/".into(),
            "tab\t newline\n nul\0 unit\u{1f} del\u{7f}".into(),
            "é 漢 🦀 \u{2028} \u{fffd}".into(),
        ];
        samples.extend((0u8..=0x7f).map(|b| char::from(b).to_string()));
        for s in samples {
            let mut ours = Vec::new();
            string(&mut ours, &s).unwrap();
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }
}
