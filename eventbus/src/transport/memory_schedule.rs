//! Scheduled delivery inside one process: the hub's queues of scheduled messages, and the
//! mover each transport of the hub runs. Due times follow tokio's clock, so a test with paused
//! time moves them as it advances the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::schedule::{MoverStats, QueueStatus, Scheduled, When};
use crate::metrics::Histogram;
use crate::sync::lock;

/// The longest a mover sleeps before it looks again (due times it missed, none in practice).
const IDLE: Duration = Duration::from_secs(3600);

/// A waiting message's place in the due order: its due instant and a sequence number.
type Slot = (Instant, u64);

/// The hub's scheduled messages.
#[derive(Default)]
pub(super) struct Schedules {
    state: Mutex<State>,
    /// Wakes the movers when a message due sooner than any other arrives.
    scheduled: Notify,
    fired: AtomicU64,
    lateness: Histogram,
}

#[derive(Default)]
struct State {
    /// By due order: the queue and id of each waiting message.
    due: BTreeMap<Slot, (String, String)>,
    /// By queue, then id: the message and its slot.
    queues: HashMap<String, HashMap<String, (Scheduled, Slot)>>,
    /// Every queue that ever held a message.
    known: BTreeSet<String>,
    next_seq: u64,
}

impl Schedules {
    /// Stores a message (replacing one with its queue and id); returns its due time.
    pub(super) fn schedule(&self, message: &Scheduled, when: When) -> SystemTime {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let (at, due) = match when {
            When::After(delay) => (now + delay, wall + delay),
            When::At(time) => {
                let ahead = time.duration_since(wall).unwrap_or_default();
                (now + ahead, time)
            }
        };
        let mut state = lock(&self.state);
        let slot = (at, state.next_seq);
        state.next_seq += 1;
        let mut stored = message.clone();
        stored.due = Some(due);
        let queue = state.queues.entry(message.queue.clone()).or_default();
        if let Some((_, old)) = queue.insert(message.id.clone(), (stored, slot)) {
            state.due.remove(&old);
        }
        let first = state.due.keys().next().is_none_or(|first| slot < *first);
        let key = (message.queue.clone(), message.id.clone());
        state.due.insert(slot, key);
        state.known.insert(message.queue.clone());
        drop(state);
        if first {
            self.scheduled.notify_waiters();
        }
        due
    }

    /// Removes a waiting message; whether it was waiting.
    pub(super) fn cancel(&self, queue: &str, id: &str) -> bool {
        let mut state = lock(&self.state);
        let Some((_, slot)) = state.queues.get_mut(queue).and_then(|q| q.remove(id)) else {
            return false;
        };
        state.due.remove(&slot);
        true
    }

    /// Up to `limit` messages waiting in `queue`, the first due first.
    pub(super) fn list(&self, queue: &str, limit: usize) -> Vec<Scheduled> {
        let state = lock(&self.state);
        let Some(q) = state.queues.get(queue) else {
            return Vec::new();
        };
        let mut waiting: Vec<&(Scheduled, Slot)> = q.values().collect();
        waiting.sort_by_key(|(_, slot)| *slot);
        waiting
            .into_iter()
            .take(limit)
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Every queue that held messages, with what waits in it.
    pub(super) fn queues(&self) -> Vec<QueueStatus> {
        let state = lock(&self.state);
        let status = |name: &String| {
            let q = state.queues.get(name);
            let first = q.and_then(|q| q.values().min_by_key(|(_, slot)| *slot));
            QueueStatus {
                queue: name.clone(),
                waiting: q.map_or(0, |q| q.len() as u64),
                next_due: first.and_then(|(m, _)| m.due),
            }
        };
        state.known.iter().map(status).collect()
    }

    /// Takes every message due by now out of the queues, the first due first.
    fn take_due(&self) -> Vec<(Scheduled, Instant)> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let mut out = Vec::new();
        while let Some(entry) = state.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), (queue, id)) = entry.remove_entry();
            if let Some((message, _)) = state.queues.get_mut(&queue).and_then(|q| q.remove(&id)) {
                out.push((message, at));
            }
        }
        out
    }

    /// When the first waiting message is due.
    fn next_due(&self) -> Option<Instant> {
        lock(&self.state).due.keys().next().map(|(at, _)| *at)
    }

    /// The mover: sends every message when it is due, with `send`, until the future is
    /// dropped.
    pub(super) async fn run_mover(&self, send: impl Fn(&Scheduled)) {
        loop {
            let woken = self.scheduled.notified();
            for (message, at) in self.take_due() {
                send(&message);
                self.fired.fetch_add(1, Ordering::Relaxed);
                self.lateness
                    .record(Instant::now().saturating_duration_since(at));
            }
            let until = self.next_due().unwrap_or_else(|| Instant::now() + IDLE);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = woken => {}
            }
        }
    }

    /// What the hub's movers did.
    pub(super) fn mover(&self) -> MoverStats {
        MoverStats {
            fired: self.fired.load(Ordering::Relaxed),
            lateness: self.lateness.snapshot(),
            queues: self.queues(),
            ..MoverStats::default()
        }
    }
}
