//! The `time` attribute, written as RFC 3339 UTC with microseconds and read from the forms that
//! publishers in the wild send (chrono's RFC 3339 reading, plus the forms it lacks); and the clock
//! behind new ids and times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};
use serde_json::Number;

/// The length of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(super) const TIME_LEN: usize = 27;

/// The years RFC 3339 can write.
const YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

/// The current time, to the microsecond.
pub(super) fn now() -> DateTime<Utc> {
    from_duration(since_epoch())
}

/// A fresh UUID v7 and the current time, read from one clock reading.
pub(super) fn new_id_and_time() -> (String, DateTime<Utc>) {
    let since = since_epoch();
    (new_id_at(since), from_duration(since))
}

/// A fresh UUID v7.
pub(super) fn new_id() -> String {
    new_id_at(since_epoch())
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn from_duration(since: Duration) -> DateTime<Utc> {
    i64::try_from(since.as_micros())
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_default()
}

/// The last (milliseconds << 12 | sub-millisecond fraction) handed out, so that ids made in this
/// process are strictly increasing (RFC 9562, section 6.2, method 3).
static LAST: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// The state of this thread's generator for the 62 random bits, seeded from the OS through
    /// std's `RandomState`.
    static RANDOM: std::cell::Cell<u64> = std::cell::Cell::new({
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new()
            .hash_one((std::thread::current().id(), std::time::Instant::now()))
    });
}

/// A UUID v7: 48 bits of Unix milliseconds, 12 bits of sub-millisecond time that also serve as a
/// counter (strictly increasing within the process, even when the clock steps back), and 62
/// random bits.
///
/// Kept by hand because the `uuid` crate is measurably slower here: `Envelope::new` (id and
/// time) took 129-133 ns with this and 193-203 ns with `Uuid::new_v7` over
/// `Timestamp::from_unix` on a shared `Mutex<ContextV7>` (with additional precision, `fast-rng`),
/// the same run back to back (criterion, `envelope/Envelope::new`). With `fast-rng` the crate no
/// longer asks the OS per id; the cost left is the lock around its shared context.
fn new_id_at(since: Duration) -> String {
    let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX) & ((1 << 48) - 1);
    let fraction = u64::from(since.subsec_nanos() % 1_000_000) * 4096 / 1_000_000;
    let candidate = (millis << 12) | fraction;
    let mut last = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = candidate.max(last.wrapping_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => last = actual,
        }
    };
    let random = RANDOM.with(|state| {
        let mut rng = fastrand::Rng::with_seed(state.get());
        let value = rng.u64(..);
        state.set(rng.get_seed());
        value
    });
    let bits = (u128::from(stamp >> 12) << 80)
        | (0x7 << 76)
        | (u128::from(stamp & 0xfff) << 64)
        | (0b10 << 62)
        | u128::from(random >> 2);
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::from_u128(bits)
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// Truncates to the microsecond, the precision of the wire format.
pub(super) fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// Writes `time` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` into `buf`; `None` outside the years
/// 0000 to 9999.
///
/// Kept by hand because chrono is measurably slower here: `encode` took 409 ns with this and
/// 515 ns with `to_rfc3339_opts(SecondsFormat::Micros, true)`, which allocates a `String` and goes
/// through `fmt` (criterion, `envelope/encode`). `formatting_agrees_with_chrono` checks that the
/// output is chrono's.
pub(super) fn format<'b>(time: &DateTime<Utc>, buf: &'b mut [u8; TIME_LEN]) -> Option<&'b str> {
    let time = time.naive_utc();
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

/// Writes `value` as decimal digits right-aligned into `out`.
fn put(out: &mut [u8], mut value: u32) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Reads a date-time string.
///
/// RFC 3339 (chrono's reading: `T`, `t` or a space between date and time, any number of
/// fractional digits, nanoseconds kept, `Z`, `z` or `+HH:MM`), and what it lacks but Python
/// writes: no zone (`isoformat()`, `str(datetime)`), read as UTC, and `+HHMM` offsets
/// (`strftime("%Y-%m-%dT%H:%M:%S%z")`). The result is truncated to the microsecond.
pub(super) fn parse_str(s: &str) -> Result<DateTime<Utc>, String> {
    parse_date_time(s)
        .map(truncate)
        .filter(|t| YEARS.contains(&t.year()))
        .ok_or_else(|| {
            format!(
                "`{}` is not an RFC 3339 date-time nor an ISO 8601 date-time without zone",
                shorten(s)
            )
        })
}

fn parse_date_time(s: &str) -> Option<DateTime<Utc>> {
    if let Some(time) = parse_canonical(s.as_bytes()) {
        return Some(time);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(s) {
        return Some(time.to_utc());
    }
    let b = s.as_bytes();
    let rfc3339 = match b {
        // `+HHMM`: the offset without its colon.
        [.., b'+' | b'-', h1, h2, m1, m2]
            if b.len() > 19 && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            let (head, minutes) = s.split_at(s.len() - 2);
            format!("{head}:{minutes}")
        }
        // No zone: UTC.
        [.., last] if last.is_ascii_digit() => format!("{s}Z"),
        _ => return None,
    };
    DateTime::parse_from_rfc3339(&rfc3339)
        .ok()
        .map(|time| time.to_utc())
}

/// Reads the form this bus writes, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, digit by digit: what nearly
/// every message carries, read in a fraction of what chrono's general RFC 3339 reader takes.
/// `None` for any other form (chrono's reader then decides) and for impossible dates and times.
fn parse_canonical(b: &[u8]) -> Option<DateTime<Utc>> {
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if b.len() != TIME_LEN || b[26] != b'Z' || separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?;
    let second = number(17, 19)?;
    // Second 60 (a leap second) is chrono's to read.
    let time = chrono::NaiveTime::from_hms_micro_opt(
        number(11, 13)?,
        number(14, 16)?,
        second,
        number(20, 26)?,
    )
    .filter(|_| second < 60)?;
    Some(date.and_time(time).and_utc())
}

/// Reads a number of seconds since the Unix epoch (integer or fractional, as Python's
/// `time.time()` gives), rounded to the microsecond, in the years 0000 to 9999.
pub(super) fn parse_epoch(n: &Number) -> Result<DateTime<Utc>, String> {
    let time = if let Some(secs) = n.as_i64() {
        DateTime::from_timestamp(secs, 0)
    } else {
        // A u64 past i64::MAX or a float. 9e12 s keeps the microseconds within i64.
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 9e12)
            .and_then(|f| DateTime::from_timestamp_micros((f * 1e6).round() as i64))
    };
    time.filter(|t| YEARS.contains(&t.year())).ok_or_else(|| {
        format!("`{n}` is outside the years 0000 to 9999 (numbers are read as Unix seconds)")
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
    use chrono::{NaiveDate, TimeZone};
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn fmt(t: DateTime<Utc>) -> String {
        let mut buf = [0; TIME_LEN];
        format(&t, &mut buf).unwrap().to_owned()
    }

    fn epoch(v: serde_json::Value) -> Result<DateTime<Utc>, String> {
        match v {
            serde_json::Value::Number(n) => parse_epoch(&n),
            _ => unreachable!(),
        }
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
    fn canonical_reading_agrees_with_chrono() {
        let mut t = utc("0000-01-01T00:00:00.000000Z");
        let step = chrono::Duration::microseconds(86_399_999_999 + 997_003);
        while t.year() < 10000 {
            let text = fmt(t);
            assert_eq!(parse_canonical(text.as_bytes()), Some(t), "{text}");
            assert_eq!(parse_str(&text), Ok(t), "{text}");
            t += step * 37;
        }
        // Other forms and impossible values are left to chrono's reader, which decides alike.
        for other in [
            "2026-02-30T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2016-12-31T23:59:60.500000Z",
            "2026-01-01t00:00:00.000000Z",
            "2026-01-01T00:00:00.000000z",
            "2026-01-01T00:00:00.00000aZ",
            "+026-01-01T00:00:00.000000Z",
        ] {
            assert_eq!(parse_canonical(other.as_bytes()), None, "{other}");
            let chrono = DateTime::parse_from_rfc3339(other).ok().map(|t| t.to_utc());
            assert_eq!(parse_date_time(other), chrono, "{other}");
        }
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
    fn reads_every_accepted_string_form() {
        let cases = [
            ("2026-11-21T07:11:00.123456Z", "2026-11-21T07:11:00.123456Z"),
            ("2026-11-21t07:11:00z", "2026-11-21T07:11:00Z"),
            ("2026-11-21T08:11:00+01:00", "2026-11-21T07:11:00Z"),
            ("2026-11-21T01:41:00-05:30", "2026-11-21T07:11:00Z"),
            ("2026-11-21 07:11:00.5+00:00", "2026-11-21T07:11:00.5Z"),
            ("2026-11-21T07:11:00+0000", "2026-11-21T07:11:00Z"),
            ("2026-11-21T09:11:00.25+0200", "2026-11-21T07:11:00.25Z"),
            ("2026-11-21T07:11:00.123456", "2026-11-21T07:11:00.123456Z"),
            ("2026-11-21T07:11:00", "2026-11-21T07:11:00Z"),
            ("2026-11-21 07:11:00.25", "2026-11-21T07:11:00.25Z"),
            ("2026-11-21 07:11:00", "2026-11-21T07:11:00Z"),
            (
                "2026-11-21T07:11:00.123456789Z",
                "2026-11-21T07:11:00.123456Z",
            ),
            (
                "2026-11-21T07:11:00.1234567891234Z",
                "2026-11-21T07:11:00.123456Z",
            ),
            ("2026-11-21T07:11:00.1Z", "2026-11-21T07:11:00.1Z"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60Z"),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
            ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00Z"),
        ];
        for (input, expected) in cases {
            let expected = if expected.starts_with("0000") {
                NaiveDate::from_ymd_opt(0, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
            } else {
                utc(expected)
            };
            assert_eq!(parse_str(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn agrees_with_chrono_on_rfc3339() {
        let mut t = utc("1901-03-04T05:06:07.000001Z");
        for i in 0..1000 {
            let offset = chrono::FixedOffset::east_opt(((i * 937) % 2879 - 1439) * 60).unwrap();
            let text = t.with_timezone(&offset).to_rfc3339();
            assert_eq!(parse_str(&text), Ok(t), "{text}");
            t += chrono::Duration::microseconds(3_987_654_321_987);
        }
    }

    #[test]
    fn reads_unix_seconds() {
        assert_eq!(epoch(json!(1_795_245_060)), Ok(utc("2026-11-21T07:11:00Z")));
        assert_eq!(
            epoch(json!(1_795_245_060.123_456)),
            Ok(utc("2026-11-21T07:11:00.123456Z"))
        );
        assert_eq!(epoch(json!(-1.5)), Ok(utc("1969-12-31T23:59:58.5Z")));
        assert_eq!(epoch(json!(0)), Ok(utc("1970-01-01T00:00:00Z")));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(
            parse_str("yesterday").unwrap_err(),
            "`yesterday` is not an RFC 3339 date-time nor an ISO 8601 date-time without zone"
        );
        for bad in [
            "",
            "2026-11-21",
            "2026-13-21T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T23:60:00Z",
            "2026-11-21T23:59:61Z",
            "2026-11-21X07:11:00Z",
            "2026-11-21T07:11:00.Z",
            "2026-11-21T07:11:00+24:00",
            "2026-11-21T07:11:00+01",
            "2026-11-21T07:11:00Z ",
            " 2026-11-21T07:11:00Z",
            "2026-11-21T07:11:00ZZ",
            "+2026-11-21T07:11:00Z",
            "2026-1-21T07:11:00Z",
            "２０２６-11-21T07:11:00Z",
            "0000-01-01T00:00:00+00:01",
        ] {
            assert!(
                parse_str(bad).unwrap_err().contains("not an RFC 3339"),
                "{bad:?}"
            );
        }
        assert_eq!(
            epoch(json!(1_795_245_060_000_i64)).unwrap_err(),
            "`1795245060000` is outside the years 0000 to 9999 (numbers are read as Unix seconds)"
        );
        assert!(epoch(json!(u64::MAX)).unwrap_err().contains("outside"));
        assert!(epoch(json!(1e300)).unwrap_err().contains("outside"));
        assert!(epoch(json!(-1e12)).unwrap_err().contains("outside"));
        let long = "x".repeat(1000);
        assert!(parse_str(&long).unwrap_err().len() < 200);
    }

    #[test]
    fn ids_are_v7_and_strictly_increasing() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
        // The timestamp is the clock's, to the millisecond.
        let (id, time) = new_id_and_time();
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        let millis = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
        assert!(
            (millis - time.timestamp_millis()).abs() <= 1000,
            "{id} {time}"
        );
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| new_id()).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 40_000);
    }
}
