//! Per-handler options: topics, queue, overflow policy, timeout, concurrency, retries.

use std::time::Duration;

use super::durable::DurableOptions;
use super::limits::{MAX_CONCURRENCY, MAX_DURATION};
use super::overflow::Overflow;
use super::retry::RetryPolicy;
use crate::Topic;

/// Options of one handler: where it listens, its queue, timeout, concurrency and retries.
///
/// ```
/// use std::time::Duration;
/// use eventbus::{HandlerOptions, Overflow, RetryPolicy};
///
/// let options = HandlerOptions::new()
///     .name("send-welcome-mail")
///     .timeout(Duration::from_secs(5))
///     .queue_capacity(10_000)
///     .overflow(Overflow::DropOldest)
///     .concurrency(4)
///     .retry(RetryPolicy::attempts(3));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HandlerOptions {
    pub(crate) name: Option<String>,
    pub(crate) topics: Vec<Topic>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) concurrency: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letter: Option<bool>,
    pub(crate) durable: DurableOptions,
    pub(crate) own_trace: bool,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            name: None,
            topics: Vec::new(),
            timeout: Some(Duration::from_secs(30)),
            capacity: 8192,
            overflow: Overflow::default(),
            concurrency: 1,
            retry: RetryPolicy::never(),
            dead_letter: None,
            durable: DurableOptions::default(),
            own_trace: false,
        }
    }
}

impl HandlerOptions {
    /// The defaults: the event's own topic, a queue of 8192, [`Overflow::DropNewest`], a 30 s
    /// timeout, concurrency 1 (in order), no retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// With the `otel` feature, each run of this handler starts a trace of its own that links to
    /// the producer's span, instead of joining the producer's trace as its child (the default).
    /// For handlers whose work should not be counted in the request that published the event:
    /// a nightly batch fed by many requests, a projection rebuilt from replays. See the crate
    /// documentation's [Tracing](crate#tracing).
    pub fn own_trace(mut self) -> Self {
        self.own_trace = true;
        self
    }

    /// Options for a handler of a durable event type: its consumer group, where a new group
    /// starts, when crashed consumers' entries are claimed, when an entry is poison.
    pub fn durable(mut self, durable: DurableOptions) -> Self {
        self.durable = durable;
        self
    }

    /// Skips events the handler's consumer group already handled within `window`, by
    /// envelope id: a shortcut for [`DurableOptions::dedupe`], which says what it promises.
    /// Durable event types only: on a pub/sub handler `connect` refuses it with a
    /// [`Config`](crate::ConnectErrorKind::Config) error.
    pub fn dedupe(mut self, window: Duration) -> Self {
        self.durable = self.durable.dedupe(window);
        self
    }

    /// The handler's name in failures, logs and metrics (default: the function's path). An
    /// empty or blank name is refused when the bus is built (a
    /// [`Config`](crate::ConnectErrorKind::Config) error).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Listens on this topic instead of the event's own; call again to add more.
    ///
    /// Use it for chosen keys of a keyed event ([`Topic::keyed`]), for pattern handlers over
    /// `Envelope<serde_json::Value>`, and for raw channels.
    pub fn topic(mut self, topic: Topic) -> Self {
        self.topics.push(topic);
        self
    }

    /// How long one run may take before it is cancelled and counted as timed out (default
    /// 30 s), counted from the first time the run waits: a run cannot be cancelled before it
    /// yields, and one that never waits runs to its end.
    ///
    /// Longer than one year (up to `Duration::MAX`) counts as one year. Zero is refused when
    /// the bus is built (a [`Config`](crate::ConnectErrorKind::Config) error), since every run would
    /// time out: use [`no_timeout`](Self::no_timeout) for no limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.min(MAX_DURATION));
        self
    }

    /// Lets runs take as long as they take.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How many events may wait for this handler (default 8192; zero counts as 1). There is no
    /// upper bound: the queue's memory grows as it fills, not up front.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// What a full queue does.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How many runs may be in flight at once; 1 (the default) handles events in order.
    ///
    /// Zero counts as 1. The most is `tokio::sync::Semaphore::MAX_PERMITS` (`usize::MAX >> 3`,
    /// no limit in practice); larger values, `usize::MAX` included, count as that.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Whether events that fail their last attempt go to the dead-letter store
    /// (default: yes when the retry policy allows more than one attempt).
    pub fn dead_letter(mut self, on: bool) -> Self {
        self.dead_letter = Some(on);
        self
    }

    pub(crate) fn dead_letters_on(&self) -> bool {
        self.dead_letter.unwrap_or(self.retry.max_attempts > 1)
    }

    /// The problems with these options that the setters cannot clamp away, all of them in one
    /// message; the bus refuses to start the handler with a [`Config`](crate::ConnectErrorKind::Config)
    /// error carrying it.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            problems.push("the handler name is empty".to_owned());
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            problems.push(
                "a timeout of zero would time out every run (use `no_timeout()` for no limit)"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_clamped_to_what_a_semaphore_holds() {
        assert_eq!(HandlerOptions::new().concurrency(0).concurrency, 1);
        let most = HandlerOptions::new().concurrency(usize::MAX).concurrency;
        assert_eq!(most, tokio::sync::Semaphore::MAX_PERMITS);
        // What the worker does with it must not panic.
        let permits = tokio::sync::Semaphore::new(most);
        assert_eq!(permits.available_permits(), most);
    }

    #[test]
    fn queue_capacity_has_a_floor_and_no_ceiling() {
        assert_eq!(HandlerOptions::new().queue_capacity(0).capacity, 1);
        assert_eq!(
            HandlerOptions::new().queue_capacity(usize::MAX).capacity,
            usize::MAX
        );
    }

    #[test]
    fn timeouts_are_clamped_to_a_year_and_zero_is_refused() {
        let o = HandlerOptions::new().timeout(Duration::MAX);
        assert_eq!(o.timeout, Some(MAX_DURATION));
        assert!(o.validate().is_ok());
        // The deadline the worker computes from it must not overflow.
        let _ = std::time::Instant::now() + MAX_DURATION;
        let e = HandlerOptions::new()
            .timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(
            e.contains("timeout of zero") && e.contains("no_timeout()"),
            "{e}"
        );
        assert!(HandlerOptions::new().no_timeout().validate().is_ok());
    }

    #[test]
    fn blank_names_are_refused_with_every_other_problem() {
        let e = HandlerOptions::new()
            .name(" ")
            .timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(
            e.contains("name is empty") && e.contains("timeout of zero"),
            "{e}"
        );
        assert!(HandlerOptions::new().name("mail").validate().is_ok());
    }
}
