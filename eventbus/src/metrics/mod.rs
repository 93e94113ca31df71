//! Counters and latency histograms, readable as a snapshot with [`EventBus::metrics`].
//!
//! [`EventBus::metrics`]: crate::EventBus::metrics

#[cfg(feature = "metrics")]
mod descriptions;
#[cfg(feature = "metrics")]
pub(crate) mod export;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::event::Event;
use crate::sync::{read, write};
use crate::transport::GroupStatus;

pub(crate) mod type_index;

/// A histogram of durations in power-of-two microsecond buckets (1 µs to about 70 minutes).
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

const BUCKETS: usize = 33;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let micros = d.as_micros().min(u64::MAX as u128) as u64;
        let idx = (64 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let quantile = |q: f64| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_upper_bound(i);
                }
            }
            Duration::MAX
        };
        LatencySnapshot {
            count,
            mean: Duration::from_micros(
                self.sum_micros
                    .load(Ordering::Relaxed)
                    .checked_div(count)
                    .unwrap_or(0),
            ),
            p50: quantile(0.50),
            p99: quantile(0.99),
            max_bucket: quantile(1.0),
            buckets: LatencyBuckets(std::array::from_fn(|i| counts[i])),
        }
    }
}

/// The upper bound of histogram bucket `i`: values with bit length `i` are below 2^i µs.
pub(crate) fn bucket_upper_bound(i: usize) -> Duration {
    Duration::from_micros(if i == 0 { 1 } else { 1u64 << i })
}

/// How many durations fell in each power-of-two bucket: bucket `i` holds durations of at
/// least 2^(i-1) µs and less than 2^i µs (bucket 0: under 1 µs; the last bucket also holds
/// everything longer). Exporters turn these counts into histograms of their own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LatencyBuckets([u64; BUCKETS]);

impl Default for LatencyBuckets {
    fn default() -> Self {
        LatencyBuckets([0; BUCKETS])
    }
}

impl std::fmt::Debug for LatencyBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl LatencyBuckets {
    /// The non-empty buckets, fastest first, as (upper bound, count).
    pub fn iter(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (bucket_upper_bound(i), *c))
    }

    /// Every bucket's count, fastest first, empty ones included: index `i` is the bucket whose
    /// upper bound is 2^i µs.
    pub fn counts(&self) -> &[u64] {
        &self.0
    }

    /// The total count over all buckets.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another histogram's counts to these.
    #[cfg(feature = "metrics")]
    pub(crate) fn merge(&mut self, other: &LatencyBuckets) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// Latency figures: bucket upper bounds, so within a factor of two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// How many runs were timed.
    pub count: u64,
    /// Mean duration.
    pub mean: Duration,
    /// Median (upper bound of its bucket).
    pub p50: Duration,
    /// 99th percentile (upper bound of its bucket).
    pub p99: Duration,
    /// The upper bound of the slowest bucket seen.
    pub max_bucket: Duration,
    /// The counts behind these figures, per power-of-two bucket.
    pub buckets: LatencyBuckets,
}

/// What a transport's mover did since the transport was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoverStats {
    /// Messages this mover sent when they were due.
    pub fired: u64,
    /// How late after their due time they were sent (by the store's clock).
    pub lateness: LatencySnapshot,
    /// Rounds of the mover that failed (the store could not be reached or refused).
    pub errors: u64,
    /// The last failure, when there was one.
    pub last_error: Option<String>,
    /// Every queue as the mover saw it at its last look (on Redis at most a poll interval
    /// ago): how many wait, and when the first is due.
    pub queues: Vec<QueueStatus>,
}

/// One queue of scheduled messages, as
/// [`Scheduler::queues`](crate::transport::Scheduler::queues) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStatus {
    /// The queue: a channel, or a keyed type's channel pattern.
    pub queue: String,
    /// How many messages wait in it.
    pub waiting: u64,
    /// When the first of them is due.
    pub next_due: Option<SystemTime>,
}

/// Live counters of one handler.
#[derive(Debug, Default)]
pub(crate) struct HandlerStats {
    pub(crate) received: AtomicU64,
    pub(crate) handled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) claimed: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) trimmed: AtomicU64,
    pub(crate) latency: Histogram,
    /// The consumer group's last polled state, for durable handlers.
    pub(crate) group: RwLock<Option<GroupMetrics>>,
}

/// A durable handler's consumer group as last read from the server (`XINFO GROUPS` on Redis),
/// refreshed about once a second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMetrics {
    /// The group's name.
    pub name: String,
    /// The stream it reads.
    pub stream: String,
    /// Entries delivered to the group's consumers and not acknowledged yet.
    pub pending: u64,
    /// Entries in the stream the group has not been handed yet; `None` when the server
    /// cannot tell.
    pub lag: Option<u64>,
    /// Consumers known to the group.
    pub consumers: u64,
}

/// Counters of one handler at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerMetrics {
    /// The handler's name.
    pub name: String,
    /// The event type it handles (`*` for pattern and raw handlers).
    pub event_type: String,
    /// Events queued for it.
    pub received: u64,
    /// Runs that succeeded.
    pub handled: u64,
    /// Events that failed their last attempt (errors, panics and timeouts).
    pub failed: u64,
    /// Attempts that panicked.
    pub panicked: u64,
    /// Attempts that timed out.
    pub timed_out: u64,
    /// Attempts that were retried.
    pub retried: u64,
    /// Durable entries handed off for a delayed retry (their slot freed meanwhile).
    pub deferred: u64,
    /// Events stored as dead letters.
    pub dead_lettered: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Messages that could not be decoded into its argument type.
    pub decode_errors: u64,
    /// Envelopes of another type or version on its topic (a shared or keyed channel, a wide
    /// pattern): not for this handler, skipped without error.
    pub skipped: u64,
    /// Events waiting in its queue now.
    pub queue_depth: u64,
    /// Runs in flight now.
    pub in_flight: u64,
    /// Durable entries delivered more than once (after a failure, a crash, or a shutdown that
    /// left them pending).
    pub redelivered: u64,
    /// Durable entries this consumer claimed from another one (presumed dead).
    pub claimed: u64,
    /// Durable events skipped because the group had handled them already (with
    /// [`DurableOptions::dedupe`](crate::DurableOptions::dedupe)).
    pub duplicates: u64,
    /// Durable entries trimmed from the stream while pending: never handled, reported.
    pub trimmed: u64,
    /// Duration of successful runs.
    pub latency: LatencySnapshot,
    /// The consumer group of a durable handler, as last read from the server.
    pub group: Option<GroupMetrics>,
}

impl From<GroupStatus> for GroupMetrics {
    fn from(s: GroupStatus) -> Self {
        GroupMetrics {
            name: s.group,
            stream: s.stream,
            pending: s.pending,
            lag: s.lag,
            consumers: s.consumers,
        }
    }
}

impl HandlerStats {
    pub(crate) fn snapshot(&self, name: &str, event_type: &str, depth: usize) -> HandlerMetrics {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HandlerMetrics {
            name: name.to_owned(),
            event_type: event_type.to_owned(),
            received: l(&self.received),
            handled: l(&self.handled),
            failed: l(&self.failed),
            panicked: l(&self.panicked),
            timed_out: l(&self.timed_out),
            retried: l(&self.retried),
            deferred: l(&self.deferred),
            dead_lettered: l(&self.dead_lettered),
            dropped: l(&self.dropped),
            decode_errors: l(&self.decode_errors),
            skipped: l(&self.skipped),
            queue_depth: depth as u64,
            in_flight: l(&self.in_flight),
            redelivered: l(&self.redelivered),
            claimed: l(&self.claimed),
            duplicates: l(&self.duplicates),
            trimmed: l(&self.trimmed),
            latency: self.latency.snapshot(),
            group: read(&self.group).clone(),
        }
    }
}

/// Live counters of the bus as a whole.
#[derive(Debug, Default)]
pub(crate) struct BusStats {
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) unrouted: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) publish_latency: Histogram,
    per_type: RwLock<HashMap<Arc<str>, Arc<TypeStats>>>,
    /// The same counters, by the number of each derived type.
    indexed: type_index::Indexed<TypeStats>,
}

#[derive(Debug, Default)]
pub(crate) struct TypeStats {
    pub(crate) published: AtomicU64,
    pub(crate) scheduled: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    /// The longest envelope of the type encoded so far: the size of the next one's buffer.
    pub(crate) encoded_len: AtomicUsize,
}

impl BusStats {
    /// Runs `f` on the counters of `E`: found by the type's number when it has one (a
    /// derived type), by its name otherwise.
    pub(crate) fn with_event<E: Event, R>(&self, f: impl FnOnce(&TypeStats) -> R) -> R {
        if let Some(index) = E::__type_index()
            && let Some(stats) = self.indexed.get(index, || self.of_type(E::TYPE))
        {
            return f(stats);
        }
        f(&self.of_type(E::TYPE))
    }

    pub(crate) fn of_type(&self, event_type: &str) -> Arc<TypeStats> {
        if let Some(s) = read(&self.per_type).get(event_type) {
            return s.clone();
        }
        write(&self.per_type)
            .entry(Arc::from(event_type))
            .or_default()
            .clone()
    }

    pub(crate) fn snapshot(&self, handlers: Vec<HandlerMetrics>) -> Metrics {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut event_types: BTreeMap<String, EventTypeMetrics> = read(&self.per_type)
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    EventTypeMetrics {
                        published: l(&v.published),
                        scheduled: l(&v.scheduled),
                        received: l(&v.received),
                        decode_errors: l(&v.decode_errors),
                        ..Default::default()
                    },
                )
            })
            .collect();
        for h in &handlers {
            let t = event_types.entry(h.event_type.clone()).or_default();
            t.handled += h.handled;
            t.failed += h.failed;
            t.dropped += h.dropped;
        }
        Metrics {
            published: l(&self.published),
            publish_errors: l(&self.publish_errors),
            received: l(&self.received),
            decode_errors: l(&self.decode_errors),
            unrouted: l(&self.unrouted),
            skipped: l(&self.skipped),
            reconnects: l(&self.reconnects),
            publish_latency: self.publish_latency.snapshot(),
            event_types,
            handlers,
            orphaned_groups: 0,
            scheduled: MoverStats::default(),
            #[cfg(feature = "postgres")]
            outbox: None,
        }
    }
}

/// Counters of one event type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventTypeMetrics {
    /// Events of this type published by this bus (scheduled ones count in `scheduled`).
    pub published: u64,
    /// Events of this type this bus scheduled for later.
    pub scheduled: u64,
    /// Messages of this type received (decoded at least as far as the envelope).
    pub received: u64,
    /// Messages for this type that could not be decoded.
    pub decode_errors: u64,
    /// Successful handler runs, over all its handlers.
    pub handled: u64,
    /// Events that failed their last attempt, over all its handlers.
    pub failed: u64,
    /// Events dropped on overflow, over all its handlers.
    pub dropped: u64,
}

/// A snapshot of the bus's counters: see [`EventBus::metrics`](crate::EventBus::metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Events published.
    pub published: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Messages received from the transport.
    pub received: u64,
    /// Messages that could not be decoded (bad envelopes and bad data).
    pub decode_errors: u64,
    /// Messages that arrived for a topic no handler holds any more.
    pub unrouted: u64,
    /// Envelopes on a shared topic (a shared or keyed channel, a wide pattern) whose type or
    /// version no handler of that topic takes: skipped, not failures.
    pub skipped: u64,
    /// Reconnections of the transport's connections.
    pub reconnects: u64,
    /// Time from `publish` to the transport's answer.
    pub publish_latency: LatencySnapshot,
    /// Per event type.
    pub event_types: BTreeMap<String, EventTypeMetrics>,
    /// Per handler, in registration order.
    pub handlers: Vec<HandlerMetrics>,
    /// Consumer groups of the service with pending or unread entries that no handler reads
    /// (see [`Health::orphaned_groups`](crate::Health::orphaned_groups)).
    pub orphaned_groups: u64,
    /// What this bus's mover of scheduled events did: events sent when due, how late, failed
    /// rounds. (On `memory://`, the movers of the whole hub.)
    pub scheduled: MoverStats,
    /// The outbox as the bus's relay saw it last, when the bus has one.
    #[cfg(feature = "postgres")]
    pub outbox: Option<crate::postgres::OutboxMetrics>,
}

impl Metrics {
    /// The counters of the handler with this name.
    pub fn handler(&self, name: &str) -> Option<&HandlerMetrics> {
        self.handlers.iter().find(|h| h.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_bound_values() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(50));
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, Duration::from_micros(128));
        assert_eq!(s.p99, Duration::from_micros(128));
        assert_eq!(s.max_bucket, Duration::from_micros(65536));
        assert_eq!(
            s.buckets.iter().collect::<Vec<_>>(),
            vec![
                (Duration::from_micros(128), 99),
                (Duration::from_micros(65536), 1)
            ]
        );
        assert_eq!(s.buckets.total(), 100);
        assert_eq!(s.buckets.counts().len(), BUCKETS);
    }
}
