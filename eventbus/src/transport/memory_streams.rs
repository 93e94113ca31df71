//! The streams of the in-process hub: append-only logs with consumer groups, as Redis Streams
//! keep them.
//!
//! Each stream key holds a log of entries (ids `<ms>-<seq>`, monotonic) bounded like
//! `MAXLEN ~ 1000000`. Each group on it keeps the last entry it handed out and its pending
//! entries (entry id → consumer, delivery count, last delivery time). A joined group has a
//! reader task (`memory_reader.rs`) that hands entries to the bus: first this consumer's own pending entries,
//! then entries idle on other consumers for longer than `claim_idle` (claimed), then new
//! ones, never more at a time than the handler's credit.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use super::{ErrorKind, GroupSpec, GroupStatus, TransportError};
use crate::options::StartFrom;
use crate::sync::lock;

/// How many entries a stream keeps; the oldest go first (Redis `MAXLEN ~ 1000000`).
const MAX_LEN: usize = 1_000_000;

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(super) struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// The id after `self` for an entry appended at `now_ms`: time moves it on, and within
    /// one millisecond (or when the clock went back) the sequence does.
    fn next(self, now_ms: u64) -> EntryId {
        if now_ms > self.ms {
            EntryId { ms: now_ms, seq: 0 }
        } else if self.seq == u64::MAX {
            EntryId {
                ms: self.ms + 1,
                seq: 0,
            }
        } else {
            EntryId {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }

    /// The last id before every entry stamped at or after `ms`.
    fn before_ms(ms: u64) -> EntryId {
        match ms.checked_sub(1) {
            Some(ms) => EntryId { ms, seq: u64::MAX },
            None => EntryId::default(),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            TransportError::new(
                ErrorKind::Server,
                format!("invalid stream entry id `{s}`: expected `<ms>-<seq>`"),
            )
        };
        let (ms, seq) = s.split_once('-').ok_or_else(invalid)?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Entry {
    id: EntryId,
    payload: Bytes,
    /// For an entry of a retry stream: the delayed retries that brought it back and the
    /// attempts made before; (0, 0) otherwise.
    retried: (u32, u32),
}

/// An entry handed out to a consumer and not acknowledged yet.
#[derive(Debug, Clone)]
struct Pending {
    consumer: Arc<str>,
    deliveries: u32,
    delivered_at: Instant,
}

/// One consumer group on a stream.
#[derive(Debug, Default)]
struct Group {
    /// The last entry handed out; later ones are new to the group.
    last_delivered: EntryId,
    pending: BTreeMap<EntryId, Pending>,
    /// Every consumer that read for the group.
    consumers: HashSet<Arc<str>>,
}

/// An entry as a reader hands it to the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Delivered {
    pub(super) id: EntryId,
    /// `None` for a pending entry trimmed from the stream: it is reported, not delivered.
    pub(super) payload: Option<Bytes>,
    pub(super) retried: (u32, u32),
    pub(super) deliveries: u32,
    /// Taken over from another consumer.
    pub(super) claimed: bool,
}

/// One stream key: its entries and its groups.
#[derive(Default)]
pub(super) struct Log {
    entries: VecDeque<Entry>,
    last_id: EntryId,
    groups: HashMap<String, Group>,
}

impl Log {
    /// Appends an entry stamped `now_ms`, then trims to `max_len` entries; returns its id.
    #[cfg(test)]
    fn push(&mut self, payload: Bytes, now_ms: u64, max_len: usize) -> EntryId {
        self.push_retried(payload, (0, 0), now_ms, max_len)
    }

    /// [`push`](Self::push) of an entry of a retry stream.
    fn push_retried(
        &mut self,
        payload: Bytes,
        retried: (u32, u32),
        now_ms: u64,
        max_len: usize,
    ) -> EntryId {
        let id = self.last_id.next(now_ms);
        self.last_id = id;
        self.entries.push_back(Entry {
            id,
            payload,
            retried,
        });
        while self.entries.len() > max_len {
            self.entries.pop_front();
        }
        id
    }

    fn payload(&self, id: EntryId) -> Option<(Bytes, (u32, u32))> {
        self.entries
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| (self.entries[i].payload.clone(), self.entries[i].retried))
    }

    /// Creates `group` unless it exists (an existing group keeps its position).
    fn create_group(&mut self, group: &str, start: StartFrom) {
        let last_delivered = match start {
            StartFrom::New => self.last_id,
            StartFrom::Beginning => EntryId::default(),
            StartFrom::Time(t) => {
                let ms = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                EntryId::before_ms(ms)
            }
        };
        self.groups
            .entry(group.to_owned())
            .or_insert_with(|| Group {
                last_delivered,
                ..Group::default()
            });
    }

    /// Hands out again up to `max` of `consumer`'s own pending entries after `after`
    /// (deliveries + 1); also returns where to go on from, while there may be more.
    pub(super) fn redeliver_own(
        &mut self,
        group: &str,
        consumer: &str,
        after: EntryId,
        max: usize,
        now: Instant,
    ) -> (Vec<Delivered>, Option<EntryId>) {
        let ids: Vec<EntryId> = self.groups.get(group).map_or_else(Vec::new, |g| {
            g.pending
                .range(after..)
                .filter(|(id, p)| **id > after && &*p.consumer == consumer)
                .map(|(id, _)| *id)
                .take(max)
                .collect()
        });
        let more = ids.last().copied().filter(|_| ids.len() == max);
        (self.hand_out_pending(group, &ids, consumer, now), more)
    }

    /// Claims up to `max` entries pending on other consumers for at least `idle`: they move to
    /// `consumer` (deliveries + 1).
    pub(super) fn claim(
        &mut self,
        group: &str,
        consumer: &str,
        idle: Duration,
        max: usize,
        now: Instant,
    ) -> Vec<Delivered> {
        let ids: Vec<EntryId> = self.groups.get(group).map_or_else(Vec::new, |g| {
            g.pending
                .iter()
                .filter(|(_, p)| {
                    &*p.consumer != consumer
                        && now.saturating_duration_since(p.delivered_at) >= idle
                })
                .map(|(id, _)| *id)
                .take(max)
                .collect()
        });
        self.hand_out_pending(group, &ids, consumer, now)
    }

    /// Hands the pending entries `ids` to `consumer` once more. An entry the log no longer
    /// holds (trimmed) leaves the pending list, and is handed out without a payload, to be
    /// reported.
    fn hand_out_pending(
        &mut self,
        group: &str,
        ids: &[EntryId],
        consumer: &str,
        now: Instant,
    ) -> Vec<Delivered> {
        let payloads: Vec<Option<(Bytes, (u32, u32))>> =
            ids.iter().map(|id| self.payload(*id)).collect();
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, payload) in ids.iter().zip(payloads) {
            if payload.is_none() {
                if let Some(p) = g.pending.remove(id) {
                    out.push(Delivered {
                        id: *id,
                        payload: None,
                        retried: (0, 0),
                        deliveries: p.deliveries,
                        claimed: false,
                    });
                }
                continue;
            }
            if let Some(p) = g.pending.get_mut(id) {
                p.deliveries = p.deliveries.saturating_add(1);
                p.delivered_at = now;
                let claimed = &*p.consumer != consumer;
                if claimed {
                    p.consumer = Arc::from(consumer);
                    g.consumers.insert(p.consumer.clone());
                }
                let (payload, retried) = payload.map_or((None, (0, 0)), |(p, r)| (Some(p), r));
                out.push(Delivered {
                    id: *id,
                    payload,
                    retried,
                    deliveries: p.deliveries,
                    claimed,
                });
            }
        }
        out
    }

    /// Hands out up to `max` entries new to the group (deliveries = 1), pending on `consumer`.
    pub(super) fn read_new(
        &mut self,
        group: &str,
        consumer: &Arc<str>,
        max: usize,
        now: Instant,
    ) -> Vec<Delivered> {
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let from = self.entries.partition_point(|e| e.id <= g.last_delivered);
        if !g.consumers.contains(consumer) {
            g.consumers.insert(consumer.clone());
        }
        let mut out = Vec::new();
        for e in self.entries.range(from..).take(max) {
            g.last_delivered = e.id;
            g.pending.insert(
                e.id,
                Pending {
                    consumer: consumer.clone(),
                    deliveries: 1,
                    delivered_at: now,
                },
            );
            out.push(Delivered {
                id: e.id,
                payload: Some(e.payload.clone()),
                retried: e.retried,
                deliveries: 1,
                claimed: false,
            });
        }
        out
    }

    /// The state of `group`: consumers, pending entries, entries not yet delivered to it.
    fn status(&self, stream: &str, group: &str) -> Option<GroupStatus> {
        let g = self.groups.get(group)?;
        let delivered = self.entries.partition_point(|e| e.id <= g.last_delivered);
        Some(GroupStatus::new(
            stream,
            group,
            g.consumers.len() as u64,
            g.pending.len() as u64,
            Some((self.entries.len() - delivered) as u64),
            g.last_delivered.to_string(),
        ))
    }

    /// Removes an entry from a group's pending entries; an unknown entry is no error.
    fn ack(&mut self, group: &str, id: EntryId) {
        if let Some(g) = self.groups.get_mut(group) {
            g.pending.remove(&id);
        }
    }
}

/// Every stream of a hub, and the notification of appends the readers wait on.
#[derive(Default)]
pub(super) struct Streams {
    pub(super) logs: Mutex<HashMap<String, Log>>,
    pub(super) appended: Notify,
}

impl Streams {
    /// Appends `payload` to `stream`; returns the entry id.
    pub(super) fn append(&self, stream: &str, payload: Bytes) -> String {
        self.append_retried(stream, payload, (0, 0))
    }

    /// [`append`](Self::append) of an entry to a retry stream: `retried` holds the delayed
    /// retries that brought it back and the attempts made before.
    pub(super) fn append_retried(
        &self,
        stream: &str,
        payload: Bytes,
        retried: (u32, u32),
    ) -> String {
        let id = {
            let mut logs = lock(&self.logs);
            let log = match logs.get_mut(stream) {
                Some(log) => log,
                None => logs.entry(stream.to_owned()).or_default(),
            };
            log.push_retried(payload, retried, now_ms(), MAX_LEN)
        };
        self.appended.notify_waiters();
        id.to_string()
    }

    /// Creates the group (and its stream) unless it exists.
    pub(super) fn create_group(&self, spec: &GroupSpec) {
        lock(&self.logs)
            .entry(spec.stream.clone())
            .or_default()
            .create_group(&spec.group, spec.start);
    }

    /// The groups of a stream with their state, by name; none when the stream does not exist.
    pub(super) fn groups(&self, stream: &str) -> Vec<GroupStatus> {
        let logs = lock(&self.logs);
        let Some(log) = logs.get(stream) else {
            return Vec::new();
        };
        let mut names: Vec<&String> = log.groups.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|g| log.status(stream, g))
            .collect()
    }

    pub(super) fn ack(&self, stream: &str, group: &str, id: &str) -> Result<(), TransportError> {
        let id: EntryId = id.parse()?;
        if let Some(log) = lock(&self.logs).get_mut(stream) {
            log.ack(group, id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: u64) -> Log {
        let mut log = Log::default();
        for i in 0..n {
            log.push(Bytes::from(i.to_string()), 1000 + i, MAX_LEN);
        }
        log
    }

    fn ids(batch: &[Delivered]) -> Vec<String> {
        batch.iter().map(|d| d.id.to_string()).collect()
    }

    #[test]
    fn ids_are_monotonic_within_a_millisecond_and_when_the_clock_goes_back() {
        let mut log = Log::default();
        let a = log.push(Bytes::new(), 5, MAX_LEN);
        let b = log.push(Bytes::new(), 5, MAX_LEN);
        let c = log.push(Bytes::new(), 3, MAX_LEN);
        let d = log.push(Bytes::new(), 9, MAX_LEN);
        assert_eq!(
            [a, b, c, d].map(|i| i.to_string()),
            ["5-0", "5-1", "5-2", "9-0"]
        );
    }

    #[test]
    fn entry_ids_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "12-3".parse::<EntryId>().ok(),
            Some(EntryId { ms: 12, seq: 3 })
        );
        let err = "12".parse::<EntryId>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid stream entry id `12`: expected `<ms>-<seq>`")
        );
        assert!("a-1".parse::<EntryId>().is_err());
    }

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest() {
        let mut log = Log::default();
        for i in 0..10 {
            log.push(Bytes::from(i.to_string()), 1, 4);
        }
        let kept: Vec<_> = log.entries.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(kept, ["6", "7", "8", "9"].map(Bytes::from));
    }

    #[test]
    fn groups_start_where_asked_and_keep_their_position() {
        let mut log = log_with(3);
        let now = Instant::now();
        let me: Arc<str> = Arc::from("c1");
        log.create_group("new", StartFrom::New);
        log.create_group("all", StartFrom::Beginning);
        let since = UNIX_EPOCH + Duration::from_millis(1001);
        log.create_group("since", StartFrom::Time(since));
        log.create_group("all", StartFrom::New);
        assert!(log.read_new("new", &me, 10, now).is_empty());
        assert_eq!(log.read_new("all", &me, 10, now).len(), 3);
        assert_eq!(
            ids(&log.read_new("since", &me, 10, now)),
            ["1001-0", "1002-0"]
        );
        log.push(Bytes::from("x"), 2000, MAX_LEN);
        assert_eq!(ids(&log.read_new("new", &me, 10, now)), ["2000-0"]);
    }

    #[test]
    fn entries_stay_pending_until_acknowledged_and_unknown_acks_are_fine() {
        let mut log = log_with(3);
        log.create_group("g", StartFrom::Beginning);
        let now = Instant::now();
        let me: Arc<str> = Arc::from("c1");
        assert_eq!(log.read_new("g", &me, 2, now).len(), 2);
        log.ack("g", EntryId { ms: 1000, seq: 0 });
        log.ack("g", EntryId { ms: 77, seq: 0 });
        log.ack("nope", EntryId { ms: 1000, seq: 0 });
        let (again, more) = log.redeliver_own("g", "c1", EntryId::default(), 10, now);
        assert_eq!(more, None);
        assert_eq!(ids(&again), ["1001-0"]);
        assert_eq!(again[0].deliveries, 2);
        assert_eq!(ids(&log.read_new("g", &me, 10, now)), ["1002-0"]);
    }

    #[test]
    fn idle_entries_of_other_consumers_are_claimed_with_their_count() {
        let mut log = log_with(2);
        log.create_group("g", StartFrom::Beginning);
        let start = Instant::now();
        let other: Arc<str> = Arc::from("other");
        log.read_new("g", &other, 10, start);
        let idle = Duration::from_secs(1);
        assert!(log.claim("g", "me", idle, 10, start).is_empty());
        let later = start + idle;
        assert!(log.claim("g", "other", idle, 10, later).is_empty());
        let claimed = log.claim("g", "me", idle, 1, later);
        assert_eq!(ids(&claimed), ["1000-0"]);
        assert_eq!(claimed[0].deliveries, 2);
        // Claimed: pending on "me" now, and not idle any more; the other one still is.
        assert_eq!(ids(&log.claim("g", "third", idle, 10, later)), ["1001-0"]);
        assert_eq!(
            log.groups["g"].pending[&EntryId { ms: 1000, seq: 0 }]
                .consumer
                .as_ref(),
            "me"
        );
    }

    #[test]
    fn a_trimmed_pending_entry_leaves_the_pending_list() {
        let mut log = Log::default();
        log.create_group("g", StartFrom::Beginning);
        let now = Instant::now();
        let me: Arc<str> = Arc::from("c1");
        log.push(Bytes::from("a"), 1, 1);
        log.read_new("g", &me, 10, now);
        log.push(Bytes::from("b"), 2, 1);
        let (again, _) = log.redeliver_own("g", "c1", EntryId::default(), 10, now);
        assert_eq!(
            again.len(),
            1,
            "handed out without a payload, to be reported"
        );
        assert_eq!(again[0].payload, None);
        assert!(log.groups["g"].pending.is_empty());
    }
}
