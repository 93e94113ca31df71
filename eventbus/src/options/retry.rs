//! Retries of a failed handler run.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::limits::MAX_DURATION;
use crate::error::FailureCause;

type RetryIf = Arc<dyn Fn(&FailureCause) -> bool + Send + Sync>;

/// When and how often a failed handler run is tried again.
///
/// Backoff grows exponentially from `initial_backoff` up to `max_backoff`, with equal jitter
/// (each delay is drawn between half and all of the computed delay). A handler with
/// concurrency 1 handles nothing else while it waits, so keep the total short.
///
/// For longer waits, a durable handler hands the entry off instead:
/// [`then_delayed`](Self::then_delayed) lists delays after which a failed entry comes back to
/// its consumer group (and to no other), each time with the immediate attempts again; the
/// handler's slot is free meanwhile. After the last one, the entry is dead-lettered.
///
/// ```
/// use std::time::Duration;
/// use eventbus::RetryPolicy;
///
/// let minute = Duration::from_secs(60);
/// let policy = RetryPolicy::attempts(3)
///     .backoff(Duration::from_millis(100), Duration::from_secs(1))
///     .then_delayed([minute, 10 * minute, 60 * minute]);
/// assert_eq!(policy.delayed_retries().len(), 3);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) retry_if: Option<RetryIf>,
    pub(crate) delayed: Arc<[Duration]>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("retry_if", &self.retry_if.as_ref().map(|_| "<fn>"))
            .field("delayed", &self.delayed)
            .finish()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::never()
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            retry_if: None,
            delayed: Arc::from([]),
        }
    }

    /// Up to `max_attempts` attempts in all (the first run included; with delayed retries, on
    /// each delivery), exponential backoff from 100 ms to 5 s. Zero counts as one attempt; `u32::MAX` is accepted.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::never()
        }
    }

    /// The delay before the second attempt and the ceiling of all delays.
    ///
    /// Zero retries at once. Each is clamped to one year (longer values, up to
    /// `Duration::MAX`, count as one year); a `max` below `initial` counts as `initial`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial.min(MAX_DURATION);
        self.max_backoff = max.min(MAX_DURATION).max(self.initial_backoff);
        self
    }

    /// Which failures are worth another attempt (all, by default).
    pub fn retry_if(mut self, f: impl Fn(&FailureCause) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(f));
        self
    }

    /// After the immediate attempts of a delivery failed, a durable entry is handed off and
    /// comes back to its group after the first of `delays`; failing again, after the second;
    /// and so on. Each return gets the immediate attempts again; after the last delay's
    /// attempts it is dead-lettered. Only for durable handlers (a pub/sub handler with delayed
    /// retries is a [`Config`](crate::ConnectErrorKind::Config) error). Each delay is clamped
    /// to one year.
    pub fn then_delayed(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.delayed = delays.into_iter().map(|d| d.min(MAX_DURATION)).collect();
        self
    }

    /// The delays of the delayed retries, in order (empty: none).
    pub fn delayed_retries(&self) -> &[Duration] {
        &self.delayed
    }

    /// The delay before delayed retry number `done + 1`, when there is one.
    pub(crate) fn delayed_retry(&self, done: u32) -> Option<Duration> {
        self.delayed.get(usize::try_from(done).ok()?).copied()
    }

    /// The number of attempts in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub(crate) fn should_retry(&self, attempt: u32, cause: &FailureCause) -> bool {
        attempt < self.max_attempts && self.retry_if.as_ref().is_none_or(|f| f(cause))
    }

    /// The delay after failed attempt `attempt` (1-based), with jitter.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_extremes_do_not_overflow() {
        assert_eq!(RetryPolicy::attempts(0).max_attempts(), 1);
        let most = RetryPolicy::attempts(u32::MAX);
        assert!(most.should_retry(u32::MAX - 1, &FailureCause::Timeout(Duration::ZERO)));
        assert!(!most.should_retry(u32::MAX, &FailureCause::Timeout(Duration::ZERO)));

        let long = RetryPolicy::attempts(3).backoff(Duration::MAX, Duration::MAX);
        assert_eq!(long.initial_backoff, MAX_DURATION);
        assert_eq!(long.max_backoff, MAX_DURATION);
        for attempt in [1, 2, 30, u32::MAX] {
            let d = long.delay(attempt);
            assert!(d >= MAX_DURATION / 2 && d <= MAX_DURATION, "{d:?}");
            let _ = std::time::Instant::now() + d;
        }

        let none = RetryPolicy::attempts(3).backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(none.delay(1), Duration::ZERO);
        assert_eq!(none.delay(u32::MAX), Duration::ZERO);

        let inverted = RetryPolicy::attempts(3).backoff(Duration::from_secs(2), Duration::ZERO);
        assert_eq!(inverted.max_backoff, Duration::from_secs(2));
    }
}
