//! Readiness, health, pings, pub/sub queries and dead letters.

use std::time::Duration;

use super::{EventBus, RawReceipt};
use crate::error::{PublishError, QueryError, QueryErrorKind, SubscribeError};
use crate::runtime::Health;
use crate::transport::{DeadLetter, DeadLetterStore, GroupStatus, PubSubAdmin};

fn unsupported(what: &str) -> QueryError {
    QueryError::new(
        QueryErrorKind::Unsupported,
        format!("this transport offers no {what}"),
    )
}

impl EventBus {
    /// Completes once every topic this bus holds is confirmed by the server; fails when the
    /// subscriber is not connected and subscribed within `within`. For a readiness probe:
    ///
    /// ```
    /// # async fn run(bus: eventbus::EventBus) -> anyhow::Result<()> {
    /// bus.ready(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self, within: Duration) -> Result<(), SubscribeError> {
        Ok(self.inner.transport().ready(within).await?)
    }

    /// Each connection's state, its last error and since when: a snapshot for health
    /// endpoints.
    pub fn health(&self) -> Health {
        let mut health = self.inner.runtime.hooks.health();
        health.orphaned_groups = crate::sync::lock(&self.inner.orphans).clone();
        #[cfg(feature = "postgres")]
        {
            health.outbox = self.outbox_metrics();
        }
        health
    }

    /// Checks the server answers; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, QueryError> {
        Ok(self.inner.transport().ping().await?)
    }

    fn admin(&self) -> Result<&dyn PubSubAdmin, QueryError> {
        self.inner
            .transport()
            .pubsub_admin()
            .ok_or_else(|| unsupported("pub/sub queries"))
    }

    fn dead_letter_store(&self) -> Result<&dyn DeadLetterStore, QueryError> {
        self.inner
            .transport()
            .dead_letter_store()
            .ok_or_else(|| unsupported("dead-letter store"))
    }

    /// Active channels on the server, optionally matching a glob (`PUBSUB CHANNELS`).
    pub async fn channels(&self, pattern: Option<&str>) -> Result<Vec<String>, QueryError> {
        Ok(self.admin()?.channels(pattern).await?)
    }

    /// Subscriber counts of channels (`PUBSUB NUMSUB`).
    pub async fn numsub(
        &self,
        channels: &[impl AsRef<str>],
    ) -> Result<Vec<(String, u64)>, QueryError> {
        let channels: Vec<String> = channels.iter().map(|c| c.as_ref().to_owned()).collect();
        Ok(self.admin()?.numsub(&channels).await?)
    }

    /// The number of pattern subscriptions on the server (`PUBSUB NUMPAT`).
    pub async fn numpat(&self) -> Result<u64, QueryError> {
        Ok(self.admin()?.numpat().await?)
    }

    /// The consumer groups of this bus's durable handlers as the server has them now
    /// (`XINFO GROUPS` on Redis): pending entries, lag, consumers. A group not created yet is
    /// left out. [`metrics`](EventBus::metrics) holds the same figures as read about a second
    /// ago.
    pub async fn groups(&self) -> Result<Vec<GroupStatus>, QueryError> {
        let mut out = Vec::new();
        for slot in self.inner.router.slots() {
            let Some((stream, group)) = super::group_watch::group_of(&slot) else {
                continue;
            };
            let groups = self.stream_groups(stream).await?;
            out.extend(groups.into_iter().filter(|g| g.group == group));
        }
        Ok(out)
    }

    /// Every consumer group of a stream (`events:<type>` for a durable type), whichever
    /// service reads it: pending entries, lag, consumers. Empty when the stream does not
    /// exist. For dashboards such as the `monitor` example.
    pub async fn stream_groups(&self, stream: &str) -> Result<Vec<GroupStatus>, QueryError> {
        Ok(self.inner.transport().stream_groups(stream).await?)
    }

    /// Dead letters of an event type, oldest first.
    pub async fn dead_letters(
        &self,
        event_type: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueryError> {
        Ok(self.dead_letter_store()?.list(event_type, limit).await?)
    }

    /// Publishes a dead letter's original message again on its channel (appends it to its
    /// stream again, for a durable event), then removes it from the store. The receipt says
    /// how many subscribers received it (1 for a durable event: it is stored, and the receipt
    /// has its new entry id).
    pub async fn replay_dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> Result<RawReceipt, PublishError> {
        let store = self
            .dead_letter_store()
            .map_err(|e| PublishError::new(crate::PublishErrorKind::Config, e.to_string()))?;
        let (receivers, entry_id) = if letter.durable {
            let id = self.append(&letter.channel, letter.payload.clone()).await?;
            (1, Some(id))
        } else {
            (
                self.send(&letter.channel, letter.payload.clone()).await?,
                None,
            )
        };
        store.remove(&letter.event_type, &letter.entry_id).await?;
        Ok(RawReceipt {
            channel: letter.channel.clone(),
            receivers,
            entry_id,
        })
    }
}
