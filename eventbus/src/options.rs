//! Per-handler options: queue, overflow policy, timeout, concurrency, retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Topic;
use crate::durable_options::DurableOptions;
use crate::error::FailureCause;

/// What a full handler queue does with one more event. Either way the drop is counted in
/// the handler's metrics and reported to the error hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the event that does not fit (the queue keeps the oldest events).
    #[default]
    DropNewest,
    /// Drop the oldest queued event to make room (the queue keeps the newest events).
    DropOldest,
}

type RetryIf = Arc<dyn Fn(&FailureCause) -> bool + Send + Sync>;

/// When and how often a failed handler run is tried again.
///
/// Backoff grows exponentially from `initial_backoff` up to `max_backoff`, with full jitter
/// (each delay is drawn between half and all of the computed delay). A handler with
/// concurrency 1 handles nothing else while it waits, so keep the total short.
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) retry_if: Option<RetryIf>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("retry_if", &self.retry_if.as_ref().map(|_| "<fn>"))
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
        }
    }

    /// Up to `max_attempts` attempts in all (the first run included), exponential backoff from
    /// 100 ms to 5 s.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::never()
        }
    }

    /// The delay before the second attempt and the ceiling of all delays.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Which failures are worth another attempt (all, by default).
    pub fn retry_if(mut self, f: impl Fn(&FailureCause) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(f));
        self
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
        let nanos = base.as_nanos() as u64;
        Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2))
    }
}

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
        }
    }
}

impl HandlerOptions {
    /// The defaults: the event's own topic, a queue of 8192, [`Overflow::DropNewest`], a 30 s
    /// timeout, concurrency 1 (in order), no retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options for a handler of a durable event type: its consumer group, where a new group
    /// starts, when crashed consumers' entries are claimed, when an entry is poison.
    pub fn durable(mut self, durable: DurableOptions) -> Self {
        self.durable = durable;
        self
    }

    /// The handler's name in failures, logs and metrics (default: the function's path).
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

    /// How long one run may take before it is cancelled and counted as timed out.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Lets runs take as long as they take.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How many events may wait for this handler (at least 1).
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
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
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
}
