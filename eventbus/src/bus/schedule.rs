//! Scheduled publishing: an event that enters its channel or stream later
//! ([`EventBus::publish_after`], [`EventBus::publish_at`]), and cancelling it.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::EventBus;
use crate::envelope::Envelope;
use crate::error::{PublishError, PublishErrorKind, QueryError, QueryErrorKind};
use crate::event::Event;
use crate::observe::{self, Produce};
use crate::transport::schedule::MAX_SCHEDULE_AHEAD;
use crate::transport::{QueueStatus, Route, Scheduled, Scheduler, When};

/// Names a scheduled event: its queue (the channel, or a keyed type's channel pattern) and its
/// id (the envelope id).
///
/// Its text is the queue and the id, separated by one space (a channel holds no whitespace):
/// `events:cart_expired 0193b9c4-…`, as `eventbus scheduled` prints and takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScheduleId {
    queue: String,
    id: String,
}

impl ScheduleId {
    /// The schedule of event `id` in `queue`.
    pub fn new(queue: impl Into<String>, id: impl Into<String>) -> Self {
        ScheduleId {
            queue: queue.into(),
            id: id.into(),
        }
    }

    /// The queue: the channel, or a keyed type's channel pattern.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The event id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.queue, self.id)
    }
}

impl FromStr for ScheduleId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(' ') {
            Some((queue, id)) if !queue.is_empty() && !id.is_empty() => {
                Ok(ScheduleId::new(queue, id))
            }
            _ => Err(format!(
                "{s:?} is not a schedule id: expected the queue and the event id separated by \
                 a space"
            )),
        }
    }
}

/// What scheduling an event returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleReceipt {
    /// The event id: the envelope keeps it when it is sent.
    pub id: String,
    /// The channel (for a durable type, the stream) it goes to.
    pub channel: String,
    /// When it is due, by the store's clock (the Redis server's).
    pub due: SystemTime,
    schedule_id: ScheduleId,
}

impl ScheduleReceipt {
    /// What [`EventBus::cancel_scheduled`] takes.
    pub fn schedule_id(&self) -> &ScheduleId {
        &self.schedule_id
    }
}

impl EventBus {
    /// Publishes an event `delay` from now, by the store's clock: a durable type is appended to
    /// its stream when due, a pub/sub type published then (and heard by whoever is subscribed
    /// then). The envelope (id, time) is made now.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use eventbus::{Event, EventBus};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, Event)] #[event(durable)] struct CartExpired { cart_id: u64 }
    /// # async fn run(bus: EventBus) -> Result<(), Box<dyn std::error::Error>> {
    /// let scheduled = bus.publish_after(CartExpired { cart_id: 7 }, Duration::from_secs(30 * 60)).await?;
    /// // The customer came back: the cart does not expire.
    /// assert!(bus.cancel_scheduled(scheduled.schedule_id()).await?);
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: a delay past ten years, or a transport that keeps no schedule
    /// ([`PublishErrorKind::Config`]); the errors of [`publish`](Self::publish).
    pub async fn publish_after<E: Event>(
        &self,
        event: E,
        delay: Duration,
    ) -> Result<ScheduleReceipt, PublishError> {
        self.schedule_envelope(Envelope::new(event), When::After(delay))
            .await
    }

    /// Publishes an event at `at` (a [`SystemTime`], or a `chrono::DateTime<Utc>`); a time in
    /// the past publishes it at once, through the schedule. See
    /// [`publish_after`](Self::publish_after).
    pub async fn publish_at<E: Event>(
        &self,
        event: E,
        at: impl Into<SystemTime>,
    ) -> Result<ScheduleReceipt, PublishError> {
        self.schedule_envelope(Envelope::new(event), When::At(at.into()))
            .await
    }

    /// Schedules a prepared envelope (see [`publish_after`](Self::publish_after)). Scheduling
    /// an envelope whose id waits in its queue already replaces the waiting one: it is sent
    /// once, at the new time.
    pub async fn schedule_envelope<E: Event>(
        &self,
        mut envelope: Envelope<E>,
        when: When,
    ) -> Result<ScheduleReceipt, PublishError> {
        if envelope.source.is_empty() {
            envelope.source = self.inner.service.clone();
        }
        check_when(when).map_err(|e| self.failed(e))?;
        let channel = envelope.data().try_channel().map_err(|e| {
            self.failed(PublishError::new(
                PublishErrorKind::Encode,
                format!("could not schedule `{}`: {e}", E::TYPE),
            ))
        })?;
        let span = observe::producer(Produce::Schedule, &channel, E::TYPE, envelope.id());
        observe::stamp(&mut envelope, &span);
        let bytes = self.encode(&envelope).map_err(|e| {
            let why = format!("could not encode `{}`: {e}", E::TYPE);
            self.failed(PublishError::new(PublishErrorKind::Encode, why).with_source(e))
        })?;
        let route = match (E::DURABLE, E::PATTERN) {
            (true, _) => Route::Append,
            (false, None) => Route::PublishSharded,
            (false, Some(_)) => Route::Publish,
        };
        let queue = E::PATTERN.unwrap_or(&channel);
        let message = Scheduled::new(queue, envelope.id(), &*channel, route, Bytes::from(bytes));
        let due = observe::within(&span, self.schedule(&message, when))
            .await
            .inspect_err(|e| observe::publish_failed(&span, e))?;
        self.inner
            .stats
            .with_event::<E, _>(|t| t.scheduled.fetch_add(1, Ordering::Relaxed));
        Ok(ScheduleReceipt {
            id: message.id.clone(),
            channel: message.channel.clone(),
            due,
            schedule_id: ScheduleId::new(message.queue, message.id),
        })
    }

    /// Hands a message to the transport's scheduler, counting the outcome as a publish.
    async fn schedule(&self, message: &Scheduled, when: When) -> Result<SystemTime, PublishError> {
        self.refuse(&message.payload)?;
        let transport = self.inner.transport();
        let Some(scheduler) = transport.scheduler() else {
            return Err(self.failed(PublishError::new(
                PublishErrorKind::Config,
                "this transport keeps no schedule: scheduled publishing needs memory:// or Redis",
            )));
        };
        self.counted(scheduler.schedule(message, when), 1).await
    }

    /// Cancels a scheduled event: `true` when it was still waiting (it will not be sent),
    /// `false` when it was sent already, was cancelled already, or is unknown.
    pub async fn cancel_scheduled(&self, id: &ScheduleId) -> Result<bool, QueryError> {
        let scheduler = self.scheduler()?;
        Ok(scheduler.cancel(&id.queue, &id.id).await?)
    }

    /// Up to `limit` events waiting in `queue` (a channel, or a keyed type's channel pattern),
    /// the first due first.
    pub async fn scheduled(&self, queue: &str, limit: usize) -> Result<Vec<Scheduled>, QueryError> {
        let scheduler = self.scheduler()?;
        Ok(scheduler.list(queue, limit).await?)
    }

    /// Every queue that has held scheduled events, with how many wait in it now.
    pub async fn scheduled_queues(&self) -> Result<Vec<QueueStatus>, QueryError> {
        let scheduler = self.scheduler()?;
        Ok(scheduler.queues().await?)
    }

    fn scheduler(&self) -> Result<&dyn Scheduler, QueryError> {
        self.inner.transport().scheduler().ok_or_else(|| {
            QueryError::new(
                QueryErrorKind::Unsupported,
                "this transport keeps no schedule",
            )
        })
    }
}

/// A due time the schedule takes: at most ten years ahead.
pub(super) fn check_when(when: When) -> Result<(), PublishError> {
    let ahead = match when {
        When::After(delay) => delay,
        When::At(at) => at.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    if ahead <= MAX_SCHEDULE_AHEAD {
        return Ok(());
    }
    Err(PublishError::new(
        PublishErrorKind::Config,
        format!(
            "an event cannot be scheduled {ahead:?} ahead: the most is ten years \
             ({MAX_SCHEDULE_AHEAD:?})"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ids_read_back_from_their_text() {
        let id = ScheduleId::new("events:cart_expired", "0193-a b");
        assert_eq!(id.to_string(), "events:cart_expired 0193-a b");
        assert_eq!(id.to_string().parse::<ScheduleId>(), Ok(id));
        assert!("events:x".parse::<ScheduleId>().is_err());
        assert!(" x".parse::<ScheduleId>().is_err());
    }

    #[test]
    fn due_times_past_ten_years_are_refused() {
        assert!(check_when(When::After(MAX_SCHEDULE_AHEAD)).is_ok());
        let err = check_when(When::After(Duration::MAX)).unwrap_err();
        assert_eq!(err.kind(), PublishErrorKind::Config);
        assert!(err.to_string().contains("ten years"), "{err}");
        assert!(check_when(When::At(SystemTime::UNIX_EPOCH)).is_ok());
    }
}
