//! Writing the envelope: straight into the output buffer, attributes in wire order. The
//! attribute names are constants written as they are; strings go through a fast path when they
//! need no escaping and through serde_json otherwise, so the output is exactly serde_json's;
//! `data` and the extensions are written by serde_json. No `serde_json::Value` is built.

use serde::Serialize;

use super::time::{self, TIME_LEN};
use super::{DEFAULT_SOURCE, EncodeError, Envelope, JSON_CONTENT_TYPE, SPECVERSION};

/// The `dataversion` to write.
#[derive(Clone, Copy)]
pub(super) enum Version<'a> {
    /// A typed event's `E::VERSION`.
    Number(u32),
    /// A version held as text.
    Text(&'a str),
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
    let start = buf.len();
    write_parts(buf, header, data, event_type, version, time).map_err(|e| {
        buf.truncate(start);
        EncodeError(e)
    })
}

fn write_parts<H, D: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    h: &Envelope<H>,
    data: &D,
    event_type: &str,
    version: Option<Version<'_>>,
    time: &str,
) -> Result<(), serde_json::Error> {
    let source = if h.source.is_empty() {
        DEFAULT_SOURCE
    } else {
        &h.source
    };
    buf.reserve(192 + h.id.len() + source.len() + event_type.len());
    buf.extend_from_slice(b"{\"specversion\":");
    string(buf, SPECVERSION)?;
    buf.extend_from_slice(b",\"id\":");
    string(buf, &h.id)?;
    buf.extend_from_slice(b",\"source\":");
    string(buf, source)?;
    buf.extend_from_slice(b",\"type\":");
    string(buf, event_type)?;
    buf.extend_from_slice(b",\"time\":");
    string(buf, time)?;
    buf.extend_from_slice(b",\"datacontenttype\":");
    string(
        buf,
        h.datacontenttype.as_deref().unwrap_or(JSON_CONTENT_TYPE),
    )?;
    buf.extend_from_slice(b",\"data\":");
    serde_json::to_writer(&mut *buf, data)?;
    match version {
        Some(Version::Number(n)) => {
            buf.extend_from_slice(b",\"dataversion\":\"");
            decimal(buf, n);
            buf.push(b'"');
        }
        Some(Version::Text(text)) => {
            buf.extend_from_slice(b",\"dataversion\":");
            string(buf, text)?;
        }
        None => {}
    }
    for (name, value) in [
        ("correlationid", &h.correlationid),
        ("causationid", &h.causationid),
        ("traceparent", &h.traceparent),
    ] {
        if let Some(value) = value {
            buf.extend_from_slice(b",\"");
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b"\":");
            string(buf, value)?;
        }
    }
    for (name, value) in &h.extensions {
        buf.push(b',');
        string(buf, name)?;
        buf.push(b':');
        serde_json::to_writer(&mut *buf, value)?;
    }
    buf.push(b'}');
    Ok(())
}

/// Writes `n` in decimal.
fn decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
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
            let mut buf = Vec::new();
            decimal(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
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
