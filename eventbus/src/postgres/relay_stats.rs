//! What the relay knows about its outbox, kept in atomics for `metrics()` and `health()`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The outbox as the bus's relay saw it last: see [`Metrics::outbox`](crate::Metrics::outbox).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxMetrics {
    /// Rows waiting to be relayed (counted up to 100 000), as last sampled (about once per
    /// poll interval).
    pub depth: u64,
    /// How long the first row in line has waited, when there is one.
    pub oldest_age: Option<Duration>,
    /// Rows this bus's relay published and removed.
    pub relayed: u64,
    /// Rows this bus's relay moved to the poison table.
    pub poisoned: u64,
    /// Whether this bus's relay is the active one.
    pub active: bool,
    /// The instance whose relay is active (its consumer name), when one is.
    pub holder: Option<String>,
    /// Whether rows have waited past the outbox's `stalled_after` without the relay draining
    /// any: then [`Health::is_up`](crate::Health::is_up) is false.
    pub stalled: bool,
}

/// The relay's counters and last sample.
#[derive(Debug)]
pub(crate) struct RelayStats {
    pub(crate) relayed: AtomicU64,
    pub(crate) poisoned: AtomicU64,
    pub(crate) active: AtomicBool,
    sample: Mutex<Sample>,
    stalled_after: Duration,
}

#[derive(Debug, Default, Clone)]
struct Sample {
    depth: u64,
    oldest_age: Option<Duration>,
    holder: Option<String>,
}

impl RelayStats {
    pub(crate) fn new(stalled_after: Duration) -> Self {
        RelayStats {
            relayed: AtomicU64::new(0),
            poisoned: AtomicU64::new(0),
            active: AtomicBool::new(false),
            sample: Mutex::new(Sample::default()),
            stalled_after,
        }
    }

    /// Records what the sampling query found.
    pub(crate) fn sampled(&self, depth: u64, oldest_age: Option<Duration>, holder: Option<String>) {
        *crate::sync::lock(&self.sample) = Sample {
            depth,
            oldest_age,
            holder,
        };
    }

    pub(crate) fn snapshot(&self) -> OutboxMetrics {
        let sample = crate::sync::lock(&self.sample).clone();
        let stalled = sample.oldest_age.is_some_and(|a| a > self.stalled_after);
        OutboxMetrics {
            depth: sample.depth,
            oldest_age: sample.oldest_age,
            relayed: self.relayed.load(Ordering::Relaxed),
            poisoned: self.poisoned.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            holder: sample.holder,
            stalled,
        }
    }
}

/// When a sample is due: at most once per `every`.
#[derive(Debug)]
pub(crate) struct Every {
    every: Duration,
    last: Option<Instant>,
}

impl Every {
    pub(crate) fn new(every: Duration) -> Self {
        Every { every, last: None }
    }

    /// Whether it is due now; marks it done when so.
    pub(crate) fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|l| now - l < self.every) {
            return false;
        }
        self.last = Some(now);
        true
    }
}
