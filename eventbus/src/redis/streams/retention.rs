//! How long durable streams keep their entries: trimmed by length or by age on every append.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::options::MAX_DURATION;

/// The approximate length a stream is trimmed to by default (`MAXLEN ~`).
pub const DEFAULT_STREAM_MAX_LEN: usize = 1_000_000;

/// How a durable type's stream is trimmed when an event is appended. Trimming is approximate
/// (`~`): Redis removes whole internal nodes, so a stream may hold somewhat more.
///
/// An entry trimmed while it is still pending on a consumer group (its handler never finished
/// it) can no longer be delivered: the bus acknowledges it, counts it in the handler's
/// `trimmed` metric and reports [`Failure::Trimmed`](crate::Failure::Trimmed). Choose a
/// retention well above what consumers may fall behind.
///
/// ```
/// use std::time::Duration;
/// use eventbus::redis::{RedisOptions, StreamRetention};
///
/// let week = RedisOptions::new()
///     .stream_retention(StreamRetention::MaxAge(Duration::from_secs(7 * 86_400)));
/// # let _ = week;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamRetention {
    /// Keep about this many entries (`XADD … MAXLEN ~ n`). The default, with 1 000 000.
    MaxLen(usize),
    /// Keep entries younger than this (`XADD … MINID ~ <now − age>`), by the entry ids' time.
    MaxAge(Duration),
    /// Never trim: the stream grows until trimmed by hand (`XTRIM`).
    Unbounded,
}

impl Default for StreamRetention {
    fn default() -> Self {
        StreamRetention::MaxLen(DEFAULT_STREAM_MAX_LEN)
    }
}

impl StreamRetention {
    /// Values the option cannot mean: a length or an age of zero would keep nothing.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        match self {
            StreamRetention::MaxLen(0) => {
                Some("StreamRetention::MaxLen(0) would trim every durable event as it is appended")
            }
            StreamRetention::MaxAge(age) if age.is_zero() => Some(
                "StreamRetention::MaxAge of zero would trim every durable event as it is appended",
            ),
            _ => None,
        }
    }

    /// The trimming arguments of an `XADD`, which go before its id.
    pub(crate) fn args(&self, now: SystemTime) -> Vec<String> {
        match *self {
            StreamRetention::MaxLen(n) => {
                let n = n.min(i64::MAX as usize).to_string();
                vec!["MAXLEN".to_owned(), "~".to_owned(), n]
            }
            StreamRetention::MaxAge(age) => {
                let now_ms = now
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let age_ms = age.min(MAX_DURATION).as_millis();
                let min_ms = now_ms.saturating_sub(age_ms);
                vec!["MINID".to_owned(), "~".to_owned(), format!("{min_ms}-0")]
            }
            StreamRetention::Unbounded => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(r: StreamRetention, now: SystemTime) -> Vec<String> {
        std::iter::once("XADD".to_owned())
            .chain(r.args(now))
            .collect()
    }

    #[test]
    fn each_retention_gives_its_trim_arguments() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_000);
        assert_eq!(
            args(StreamRetention::default(), now),
            ["XADD", "MAXLEN", "~", "1000000"]
        );
        assert_eq!(
            args(StreamRetention::MaxAge(Duration::from_secs(60)), now),
            ["XADD", "MINID", "~", "940000-0"]
        );
        assert_eq!(
            args(StreamRetention::MaxAge(Duration::MAX), now),
            ["XADD", "MINID", "~", "0-0"]
        );
        assert_eq!(args(StreamRetention::Unbounded, now), ["XADD"]);
    }

    #[test]
    fn retentions_that_keep_nothing_are_problems() {
        assert!(StreamRetention::MaxLen(0).problem().is_some());
        assert!(StreamRetention::MaxAge(Duration::ZERO).problem().is_some());
        assert!(StreamRetention::MaxLen(1).problem().is_none());
        assert!(StreamRetention::Unbounded.problem().is_none());
    }
}
