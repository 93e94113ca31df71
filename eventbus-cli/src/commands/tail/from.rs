//! `--from`: where `tail --stream` starts reading.

use chrono::DateTime;

use crate::exit::CliError;

/// Where reading a stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Start {
    /// After the last entry present when the tail starts (`$`).
    End,
    /// After this entry id (`0-0` reads from the first entry).
    After(String),
}

impl Start {
    /// Reads `--from`: `$`, `0`, an entry id (`1733390000000-0`) or an RFC 3339 time.
    pub(super) fn parse(from: Option<&str>) -> Result<Start, CliError> {
        let Some(text) = from.map(str::trim) else {
            return Ok(Start::End);
        };
        if text == "$" {
            return Ok(Start::End);
        }
        if text == "0" {
            return Ok(Start::After("0-0".into()));
        }
        if is_entry_id(text) {
            return Ok(Start::After(text.to_owned()));
        }
        let time = DateTime::parse_from_rfc3339(text).map_err(|e| {
            CliError::usage(format!(
                "--from `{text}`: expected $, 0, an entry id or an RFC 3339 time ({e})"
            ))
        })?;
        Ok(Start::at_millis(time.timestamp_millis()))
    }

    /// Entries from this millisecond on: XREAD reads after the id given, so start just
    /// before it.
    fn at_millis(ms: i64) -> Start {
        match u64::try_from(ms) {
            Ok(ms) if ms > 0 => Start::After(format!("{}-{}", ms - 1, u64::MAX)),
            _ => Start::After("0-0".into()),
        }
    }
}

fn is_entry_id(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    text.split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_values() {
        assert_eq!(Start::parse(None).unwrap(), Start::End);
        assert_eq!(Start::parse(Some("$")).unwrap(), Start::End);
        assert_eq!(Start::parse(Some("0")).unwrap(), Start::After("0-0".into()));
        assert_eq!(
            Start::parse(Some("5-1")).unwrap(),
            Start::After("5-1".into())
        );
        assert_eq!(
            Start::parse(Some("1970-01-01T00:00:01Z")).unwrap(),
            Start::After(format!("999-{}", u64::MAX))
        );
        assert!(Start::parse(Some("yesterday")).is_err());
    }
}
