//! The `time` attribute: written as RFC 3339 UTC with microseconds, read from the forms that
//! publishers in the wild send.

use chrono::{DateTime, Datelike, NaiveDateTime, SubsecRound, Timelike, Utc};
use serde_json::{Number, Value};

use super::kind;

/// The length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(super) const TIME_LEN: usize = 27;

/// The years RFC 3339 can write.
const YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

/// Seconds past which a number is probably milliseconds (the year 5138).
const MILLIS_HINT: f64 = 1e11;

/// Zoned forms tried after RFC 3339: offsets without a colon (`+0000`), as `strftime("%z")` writes.
const ZONED: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];

/// Zone-less forms, read as UTC: Python's `datetime.utcnow().isoformat()` and `str(datetime)`.
const NAIVE: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// The current time, to the microsecond.
pub(super) fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// Truncates to the microsecond, the precision of the wire format.
pub(super) fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// Writes `time` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` into `buf`; `None` outside the years
/// 0000 to 9999.
pub(super) fn format<'b>(time: &DateTime<Utc>, buf: &'b mut [u8; TIME_LEN]) -> Option<&'b str> {
    let year = time.year();
    if !YEARS.contains(&year) {
        return None;
    }
    let mut second = time.second();
    let mut nanos = time.nanosecond();
    if nanos >= 1_000_000_000 {
        // chrono's leap second: written as second 60.
        nanos -= 1_000_000_000;
        second += 1;
    }
    *buf = *b"0000-00-00T00:00:00.000000Z";
    put(&mut buf[0..4], year.unsigned_abs());
    put(&mut buf[5..7], time.month());
    put(&mut buf[8..10], time.day());
    put(&mut buf[11..13], time.hour());
    put(&mut buf[14..16], time.minute());
    put(&mut buf[17..19], second);
    put(&mut buf[20..26], nanos / 1000);
    std::str::from_utf8(buf).ok()
}

/// Writes `value` as decimal digits right-aligned into `out` (already zero-filled).
fn put(out: &mut [u8], mut value: u32) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Reads a `time` or `timestamp` attribute.
///
/// Accepted: an RFC 3339 date-time (any offset; `T`, `t` or space between date and time); the
/// same with a `+hhmm` offset; an ISO 8601 date-time without zone, read as UTC (`T` or space,
/// with or without fractional seconds); a number of seconds since the Unix epoch, integer or
/// fractional. The result is truncated to the microsecond (a fractional epoch is rounded to it)
/// and lies in the years 0000 to 9999.
pub(super) fn parse(value: &Value) -> Result<DateTime<Utc>, String> {
    let time = match value {
        Value::String(s) => parse_str(s)?,
        Value::Number(n) => parse_epoch(n)?,
        other => {
            return Err(format!(
                "expected a date-time string or a number of Unix seconds, found {}",
                kind(other)
            ));
        }
    };
    if !YEARS.contains(&time.year()) {
        return Err(format!(
            "`{value}` is outside the years 0000 to 9999{}",
            if matches!(value, Value::Number(_)) {
                " (numbers are read as seconds)"
            } else {
                ""
            }
        ));
    }
    Ok(truncate(time))
}

fn parse_str(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    for format in ZONED {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Ok(t.to_utc());
        }
    }
    for format in NAIVE {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "`{}` is not an RFC 3339 date-time nor an ISO 8601 date-time without zone",
        shorten(s)
    ))
}

fn parse_epoch(n: &Number) -> Result<DateTime<Utc>, String> {
    let time = if let Some(secs) = n.as_i64() {
        DateTime::from_timestamp(secs, 0)
    } else {
        // A u64 past i64::MAX or a float. 9e12 s keeps the microseconds within i64.
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 9e12)
            .and_then(|f| DateTime::from_timestamp_micros((f * 1e6).round() as i64))
    };
    time.ok_or_else(|| {
        let hint = if n.as_f64().is_some_and(|f| f.abs() >= MILLIS_HINT) {
            " (numbers are read as seconds)"
        } else {
            ""
        };
        format!("`{n}` is out of range for a time{hint}")
    })
}

/// At most 64 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn fmt(t: DateTime<Utc>) -> String {
        let mut buf = [0; TIME_LEN];
        format(&t, &mut buf).unwrap().to_owned()
    }

    #[test]
    fn formats_with_microseconds_and_z() {
        assert_eq!(
            fmt(utc("2026-11-21T07:11:00.123456Z")),
            "2026-11-21T07:11:00.123456Z"
        );
        assert_eq!(
            fmt(utc("0001-01-01T00:00:00Z")),
            "0001-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            fmt(utc("9999-12-31T23:59:59.999999Z")),
            "9999-12-31T23:59:59.999999Z"
        );
        // Offsets are converted to UTC; nanoseconds are cut, not rounded.
        assert_eq!(
            fmt(utc("2026-11-21T09:11:00.123456789+02:00")),
            "2026-11-21T07:11:00.123456Z"
        );
        assert_eq!(
            fmt(utc("2016-12-31T23:59:60.5Z")),
            "2016-12-31T23:59:60.500000Z"
        );
        let far = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
        assert!(format(&far, &mut [0; TIME_LEN]).is_none());
    }

    #[test]
    fn formatting_agrees_with_chrono() {
        let mut t = utc("1969-07-20T20:17:40.000001Z");
        for _ in 0..1000 {
            assert_eq!(
                fmt(t),
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
            t += chrono::Duration::microseconds(987_654_321_987);
        }
    }

    #[test]
    fn reads_every_accepted_form() {
        let cases = [
            (
                json!("2026-11-21T07:11:00.123456Z"),
                "2026-11-21T07:11:00.123456Z",
            ),
            (json!("2026-11-21t07:11:00z"), "2026-11-21T07:11:00Z"),
            (json!("2026-11-21T08:11:00+01:00"), "2026-11-21T07:11:00Z"),
            (
                json!("2026-11-21 07:11:00.5+00:00"),
                "2026-11-21T07:11:00.5Z",
            ),
            (json!("2026-11-21T07:11:00+0000"), "2026-11-21T07:11:00Z"),
            (
                json!("2026-11-21T07:11:00.123456"),
                "2026-11-21T07:11:00.123456Z",
            ),
            (json!("2026-11-21T07:11:00"), "2026-11-21T07:11:00Z"),
            (json!("2026-11-21 07:11:00.25"), "2026-11-21T07:11:00.25Z"),
            (json!("2026-11-21 07:11:00"), "2026-11-21T07:11:00Z"),
            (
                json!("2026-11-21T07:11:00.123456789Z"),
                "2026-11-21T07:11:00.123456Z",
            ),
            (json!(1_795_245_060), "2026-11-21T07:11:00Z"),
            (json!(1_795_245_060.123_456), "2026-11-21T07:11:00.123456Z"),
            (json!(-1.5), "1969-12-31T23:59:58.5Z"),
            (json!(0), "1970-01-01T00:00:00Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(&input), Ok(utc(expected)), "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let err = |v: Value| parse(&v).unwrap_err();
        assert_eq!(
            err(json!("yesterday")),
            "`yesterday` is not an RFC 3339 date-time nor an ISO 8601 date-time without zone"
        );
        assert!(err(json!("2026-11-21")).contains("not an RFC 3339"));
        assert!(err(json!("2026-13-21T00:00:00Z")).contains("not an RFC 3339"));
        assert_eq!(
            err(json!(true)),
            "expected a date-time string or a number of Unix seconds, found a boolean"
        );
        assert_eq!(
            err(json!(1_795_245_060_000_i64)),
            "`1795245060000` is outside the years 0000 to 9999 (numbers are read as seconds)"
        );
        assert!(err(json!(u64::MAX)).contains("out of range"));
        assert!(err(json!(1e300)).contains("out of range"));
        assert!(err(json!("+10000-01-01T00:00:00")).contains("0000 to 9999"));
        let long = "x".repeat(1000);
        assert!(err(json!(long)).len() < 200);
    }
}
