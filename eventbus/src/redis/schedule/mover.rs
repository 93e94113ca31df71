//! The mover: sends scheduled messages when they are due. Every bus runs one (unless its
//! options say otherwise); the move script makes each message go once however many run.
//!
//! A round reads the index of queues and runs the move script on each; the script answers
//! with the server's now and the queue's next due time, so the mover sleeps until the first of
//! those (by the server's clock, measured as a distance, so the service's clock does not
//! matter) or the poll interval, whichever comes first. A schedule made by this bus for
//! sooner than that wakes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::keys::{INDEX, QueueKeys};
use super::scripts;
use crate::metrics::Histogram;
use crate::redis::shared::Shared;
use crate::sync::lock;
use crate::transport::{MoverStats, QueueStatus, TransportError};

/// The most messages one run of the move script sends.
const BATCH: usize = 256;
/// The longest pause after failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The mover's counters and its wake-up.
#[derive(Default)]
pub(crate) struct Mover {
    fired: AtomicU64,
    lateness: Histogram,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// When the mover means to look next.
    next_look: Mutex<Option<Instant>>,
    /// Every queue as it was at the mover's last look.
    queues: Mutex<BTreeMap<String, QueueStatus>>,
    wake: Notify,
}

impl Mover {
    /// A message of this bus is due in `ms` milliseconds (server time): wakes the mover when
    /// that is sooner than it meant to look.
    pub(crate) fn wake_by(&self, ms: i64) {
        let at = Instant::now() + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        if lock(&self.next_look).is_none_or(|next| at < next) {
            self.wake.notify_one();
        }
    }

    pub(crate) fn stats(&self) -> MoverStats {
        MoverStats {
            fired: self.fired.load(Ordering::Relaxed),
            lateness: self.lateness.snapshot(),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            queues: lock(&self.queues).values().cloned().collect(),
        }
    }

    /// Moves due messages until the transport closes, looking at least every `every`.
    pub(crate) async fn run(self: Arc<Self>, shared: Arc<Shared>, every: Duration) {
        let mut failures: u32 = 0;
        loop {
            let woken = self.wake.notified();
            let pause = match self.round(&shared).await {
                Ok(next) => {
                    failures = 0;
                    next.map_or(every, |d| d.min(every))
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.failed(&e);
                    every.saturating_mul(1 << failures.min(8)).min(MAX_BACKOFF)
                }
            };
            *lock(&self.next_look) = Some(Instant::now() + pause);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = woken => {}
            }
        }
    }

    /// Notes how many wait in `queue` and when the first is due (server milliseconds; -1:
    /// none).
    fn saw(&self, queue: &str, waiting: u64, next_due: i64) {
        let next_due = u64::try_from(next_due)
            .ok()
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let status = QueueStatus {
            queue: queue.to_owned(),
            waiting,
            next_due,
        };
        lock(&self.queues).insert(queue.to_owned(), status);
    }

    fn failed(&self, e: &TransportError) {
        let count = self.errors.fetch_add(1, Ordering::Relaxed);
        if count.is_power_of_two() || count == 0 {
            tracing::warn!(error = %e, "moving scheduled events failed");
        }
        *lock(&self.last_error) = Some(e.to_string());
    }

    /// One look at every queue: how long until the next message is due, if any waits.
    async fn round(&self, shared: &Shared) -> Result<Option<Duration>, TransportError> {
        let wait = shared.options.response_timeout;
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(INDEX);
        let queues: Vec<String> = shared
            .command("reading the schedule queues", &cmd, wait)
            .await?;
        let moves = queues.iter().map(|q| self.drain(shared, q));
        let mut next: Option<Duration> = None;
        let mut error = None;
        for result in futures_util::future::join_all(moves).await {
            match result {
                Ok(Some(d)) => next = Some(next.map_or(d, |n| n.min(d))),
                Ok(None) => {}
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(next),
        }
    }

    /// Runs the move script on `queue` until nothing more is due; how long until its next
    /// message is due.
    async fn drain(
        &self,
        shared: &Shared,
        queue: &str,
    ) -> Result<Option<Duration>, TransportError> {
        let keys = QueueKeys::of(queue);
        let wait = shared.options.response_timeout;
        loop {
            let reply: (i64, i64, Vec<i64>, u64, String, u64) = shared
                .in_turn("moving scheduled events", wait, |mut conn| {
                    let mut call = scripts::MOVE.prepare_invoke();
                    call.key(&keys.due).key(&keys.items).arg(BATCH);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await?;
            let (now, next_due, late, aside, refused, waiting) = reply;
            self.saw(queue, waiting, next_due);
            self.fired.fetch_add(late.len() as u64, Ordering::Relaxed);
            for ms in &late {
                let ms = u64::try_from(*ms).unwrap_or(0);
                self.lateness.record(Duration::from_millis(ms));
            }
            if aside > 0 {
                tracing::warn!(
                    queue,
                    aside,
                    "scheduled events set aside: see the queue's `:failed` hash for why"
                );
            }
            if !refused.is_empty() {
                return Err(TransportError::new(
                    crate::transport::ErrorKind::Server,
                    format!("moving scheduled events of `{queue}` failed: {refused}"),
                ));
            }
            if late.len() as u64 + aside < BATCH as u64 {
                let next = (next_due >= 0).then(|| (next_due - now).max(0).unsigned_abs());
                return Ok(next.map(Duration::from_millis));
            }
        }
    }
}
