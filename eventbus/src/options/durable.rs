//! Options of a durable handler: its consumer group, where the group starts, redelivery
//! limits.

use std::time::{Duration, SystemTime};

use super::limits::MAX_DURATION;

/// Where a consumer group starts when it is created. An existing group keeps its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartFrom {
    /// Entries appended from now on (`$`).
    #[default]
    New,
    /// Every entry the stream still holds (`0`): replays history into a new handler.
    Beginning,
    /// Entries appended at or after this time.
    Time(SystemTime),
}

/// Options of a handler of a durable event type (`#[event(durable)]`), given with
/// [`HandlerOptions::durable`](crate::HandlerOptions::durable).
///
/// ```
/// use std::time::Duration;
/// use eventbus::{DurableOptions, HandlerOptions, StartFrom};
///
/// let options = HandlerOptions::new().durable(
///     DurableOptions::new()
///         .group("billing-charge")
///         .start_from(StartFrom::Beginning)
///         .claim_idle(Duration::from_secs(10))
///         .max_deliveries(3),
/// );
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct DurableOptions {
    pub(crate) group: Option<String>,
    pub(crate) start: StartFrom,
    pub(crate) claim_idle: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) dedupe: Option<Duration>,
    pub(crate) consumer_expiry: Option<Duration>,
}

/// The longest de-duplication window: a year.
const MAX_DEDUPE_WINDOW: Duration = MAX_DURATION;

/// The longest `claim_idle` accepted: a day.
const MAX_CLAIM_IDLE: Duration = Duration::from_secs(86_400);

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            group: None,
            start: StartFrom::New,
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            dedupe: None,
            consumer_expiry: None,
        }
    }
}

impl DurableOptions {
    /// The defaults: the group `<service>:<event type>` (`<service>:<name>` for a handler
    /// named with [`HandlerOptions::name`](crate::HandlerOptions::name)), new entries only for
    /// a new group,
    /// claiming entries idle on another consumer for 30 s, poison after 5 deliveries, no
    /// de-duplication.
    pub fn new() -> Self {
        Self::default()
    }

    /// The consumer group's name. Every instance of a service must use the same one: they
    /// share the group's work.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Where a new group starts; an existing group keeps its position.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// How long an entry may stay unacknowledged on another consumer (one that crashed)
    /// before this one claims it; between 10 ms and a day.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle.clamp(Duration::from_millis(10), MAX_CLAIM_IDLE);
        self
    }

    /// After how many deliveries an entry is poison: stored as a dead letter with its delivery
    /// count and acknowledged, without running the handler again. At least 1.
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = deliveries.max(1);
        self
    }

    /// How long a consumer of the group that owns nothing pending may stay idle before a
    /// live member of the group deletes it: the consumers left behind by processes that died
    /// (each process start adds one). By default 5 minutes or 10 × `claim_idle`, whichever
    /// is longer; at least 10 ms. A consumer that leaves cleanly deletes itself at once when
    /// it owns nothing pending.
    pub fn consumer_expiry(mut self, expiry: Duration) -> Self {
        self.consumer_expiry = Some(expiry.clamp(Duration::from_millis(10), MAX_CLAIM_IDLE));
        self
    }

    /// Skips events this group has already handled, by envelope id, for `window` after each
    /// was handled (at most a year; zero turns it off). Off by default.
    ///
    /// What it promises: once a run of the handler returned `Ok` and the id was recorded
    /// (`SET eventbus:dedupe:<group>:<id> 1 PX <window>` on Redis, before the entry is
    /// acknowledged), a redelivery of that entry or another entry with the same envelope id
    /// (a publisher that retried) is acknowledged without running the handler, and counted
    /// in the handler's `duplicates` metric.
    ///
    /// What it does not: it is not exactly-once. A crash after the handler succeeded and
    /// before the id was recorded runs the handler again; two runs of one event at the same
    /// time (an entry claimed from a consumer that was only slow) both run; and the record
    /// is not part of the handler's own writes. Handlers with side effects that must happen
    /// once still need an idempotent write (a unique key, a conditional update). When the
    /// store cannot be reached, the handler runs (at-least-once wins) and the error is
    /// reported as [`Failure::Dedupe`](crate::Failure::Dedupe).
    pub fn dedupe(mut self, window: Duration) -> Self {
        self.dedupe = (!window.is_zero()).then(|| window.min(MAX_DEDUPE_WINDOW));
        self
    }
}
