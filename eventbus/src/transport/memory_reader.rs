//! The reader of a joined consumer group of the in-process hub, and its acknowledgements:
//! what it hands the bus, and how an entry is handed off for a delayed retry.

use std::sync::Arc;

use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::memory_schedule::Schedules;
use super::memory_streams::{Delivered, EntryId, Streams};
use super::{
    Ack, Acknowledge, BoxFuture, Deferred, GroupSpec, Inbound, Message, Route, Scheduled,
    TransportError, When,
};
use crate::sync::lock;

/// The stream a group's delayed retries come back on, read by that group only.
pub(super) fn retry_stream(stream: &str, group: &str) -> String {
    format!("eventbus:retry:{{{stream}}}:{group}")
}

/// Acknowledges the entries of one group on one stream, and hands them off for delayed
/// retries.
struct GroupAck {
    streams: Arc<Streams>,
    schedules: Arc<Schedules>,
    stream: Arc<str>,
    group: Arc<str>,
    /// The group's retry stream.
    retry: Arc<str>,
}

impl Acknowledge for GroupAck {
    fn ack<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.streams.ack(&self.stream, &self.group, entry_id) })
    }

    /// Scheduled to come back on the group's retry stream, then acknowledged, under no await:
    /// in one process there is no crash between the two that would leave the other.
    fn defer<'a>(
        &'a self,
        entry_id: &'a str,
        later: &'a Deferred,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let id = uuid::Uuid::now_v7().to_string();
            let retry = &*self.retry;
            let mut back = Scheduled::new(retry, id, retry, Route::Append, later.payload.clone());
            back.retried = (later.delayed, later.attempts);
            self.schedules.schedule(&back, When::After(later.delay));
            self.streams.ack(&self.stream, &self.group, entry_id)
        })
    }
}

/// Starts reading for a joined group until `cancel` fires, tracked by `tasks`.
pub(super) fn spawn_reader(
    tasks: &TaskTracker,
    hub: (Arc<Streams>, Arc<Schedules>),
    spec: &GroupSpec,
    channel: &str,
    inbound: Arc<dyn Inbound>,
    cancel: CancellationToken,
) {
    let (streams, schedules) = hub;
    let stream: Arc<str> = Arc::from(spec.stream.as_str());
    let group: Arc<str> = Arc::from(spec.group.as_str());
    let acker = Arc::new(GroupAck {
        streams: streams.clone(),
        schedules,
        stream: stream.clone(),
        group: group.clone(),
        retry: Arc::from(retry_stream(channel, &spec.group)),
    });
    let reader = Reader {
        streams,
        inbound,
        stream,
        channel: Arc::from(channel),
        group,
        consumer: Arc::from(spec.consumer.as_str()),
        claim_idle: spec.claim_idle,
        acker,
        cancel,
        recovering: Some(EntryId::default()),
        next_claim: Instant::now(),
    };
    tasks.spawn(reader.run());
}

/// The task that reads for one joined group.
struct Reader {
    streams: Arc<Streams>,
    inbound: Arc<dyn Inbound>,
    stream: Arc<str>,
    /// The channel its messages say they came on: the group's stream, also for the entries of
    /// its retry stream.
    channel: Arc<str>,
    group: Arc<str>,
    consumer: Arc<str>,
    claim_idle: Duration,
    acker: Arc<GroupAck>,
    cancel: CancellationToken,
    /// While this consumer's own pending entries are handed out again: the last one so far.
    recovering: Option<EntryId>,
    /// When to look for entries idle on other consumers next.
    next_claim: Instant,
}

impl Reader {
    async fn run(mut self) {
        let streams = self.streams.clone();
        while let Some(credit) = self.credit().await {
            // Registered before looking, so an append in between still wakes us.
            let appended = streams.appended.notified();
            let batch = self.take(credit);
            if batch.is_empty() {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = appended => {}
                    _ = tokio::time::sleep_until(self.next_claim) => {}
                }
                continue;
            }
            for d in batch {
                self.deliver(d);
            }
        }
    }

    /// How many entries the handler takes now, waiting for room when it takes none; `None`
    /// once the reader is stopped.
    async fn credit(&self) -> Option<usize> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let credit = self.inbound.credit(&self.group);
        if credit > 0 {
            return Some(credit);
        }
        tokio::select! {
            _ = self.cancel.cancelled() => return None,
            _ = self.inbound.credit_available(&self.group) => {}
        }
        match self.inbound.credit(&self.group) {
            0 => {
                // The handler is gone or closed its queue: nothing more to read until the
                // group is left.
                self.cancel.cancelled().await;
                None
            }
            credit => Some(credit),
        }
    }

    /// Up to `credit` entries: own pending ones first, then claimed ones, then new ones.
    fn take(&mut self, credit: usize) -> Vec<Delivered> {
        let now = Instant::now();
        let mut logs = lock(&self.streams.logs);
        // Looked at under the lock: once the group is left, no later append reaches this reader.
        if self.cancel.is_cancelled() {
            return Vec::new();
        }
        let Some(log) = logs.get_mut(&*self.stream) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(after) = self.recovering {
            (out, self.recovering) =
                log.redeliver_own(&self.group, &self.consumer, after, credit, now);
        }
        if out.len() < credit && now >= self.next_claim {
            let max = credit - out.len();
            let claimed = log.claim(&self.group, &self.consumer, self.claim_idle, max, now);
            if claimed.len() < max {
                self.next_claim = now + self.claim_idle / 2;
            }
            out.extend(claimed);
        }
        let max = credit - out.len();
        if max > 0 {
            out.extend(log.read_new(&self.group, &self.consumer, max, now));
        }
        out
    }

    fn deliver(&self, d: Delivered) {
        let Some(payload) = d.payload else {
            self.inbound.trimmed(&self.group, &d.id.to_string());
            return;
        };
        let mut ack = Ack::new(
            self.group.clone(),
            Arc::from(d.id.to_string()),
            d.deliveries,
            self.acker.clone(),
        );
        if d.claimed {
            ack = ack.mark_claimed();
        }
        ack = ack.with_delayed(d.retried.0, d.retried.1);
        self.inbound.message(Message {
            channel: self.channel.clone(),
            pattern: None,
            payload,
            ack: Some(ack),
        });
    }
}
