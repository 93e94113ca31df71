//! Publishing: an event into its envelope, the envelope onto its channel.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use super::{EventBus, Phase, PublishOptions};
use crate::envelope::{EncodeError, Envelope};
use crate::error::{PublishError, PublishErrorKind};
use crate::event::{Event, check_name};
use crate::observe::{self, Produce};
use crate::transport::TransportError;

/// What publishing returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReceipt {
    /// The event id.
    pub id: String,
    /// The channel it was published on.
    pub channel: String,
    /// What `PUBLISH` returned: how many subscriptions received it. A bus that holds both a
    /// channel and a pattern matching it counts twice, and so receives it twice. For a durable
    /// event, 1: it is stored.
    pub receivers: u64,
    /// For a durable event, its entry id in the stream (`1733390000000-0`).
    pub entry_id: Option<String>,
}

/// What publishing a payload as it is returned: [`EventBus::publish_raw`],
/// [`EventBus::publish_raw_sharded`] and [`EventBus::replay_dead_letter`].
///
/// A receipt of its own rather than a [`PublishReceipt`], because a raw payload has no event
/// id the bus could name: it is whatever bytes were given (an envelope or not).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawReceipt {
    /// The channel it was published on (the stream, for a replayed durable dead letter).
    pub channel: String,
    /// What `PUBLISH` returned: how many subscriptions received it; 1 for a replayed durable
    /// dead letter: it is stored.
    pub receivers: u64,
    /// For a replayed durable dead letter, its new entry id in the stream; `None` otherwise.
    pub entry_id: Option<String>,
}

/// The smallest and the largest buffer an envelope is encoded into at first (a longer one
/// grows it).
const MIN_BUFFER: usize = 256;
const MAX_BUFFER: usize = 16 * 1024;

impl EventBus {
    /// Publishes an event on its channel.
    ///
    /// Dropping the returned future after the command was written (in a `select!`, say) may
    /// still deliver the event: only the receipt is lost.
    pub async fn publish<E: Event>(&self, event: E) -> Result<PublishReceipt, PublishError> {
        self.publish_envelope(Envelope::new(event)).await
    }

    /// Publishes an event with extra attributes, such as those of the event that caused it:
    ///
    /// ```
    /// # use eventbus::{Envelope, Event, EventBus, PublishOptions};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, Event)] struct OrderPlaced { order_id: u64 }
    /// # #[derive(Serialize, Deserialize, Event)] struct InvoiceSent { order_id: u64 }
    /// async fn invoice(order: Envelope<OrderPlaced>, bus: EventBus) -> anyhow::Result<()> {
    ///     let follow_up = InvoiceSent { order_id: order.data().order_id };
    ///     bus.publish_with(follow_up, PublishOptions::caused_by(&order)).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn publish_with<E: Event>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<PublishReceipt, PublishError> {
        let mut envelope = Envelope::new(event);
        options.apply(&mut envelope);
        self.publish_envelope(envelope).await
    }

    /// Publishes a prepared envelope (its source is this bus's service when empty).
    pub async fn publish_envelope<E: Event>(
        &self,
        mut envelope: Envelope<E>,
    ) -> Result<PublishReceipt, PublishError> {
        if envelope.source.is_empty() {
            envelope.source = self.inner.service.clone();
        }
        let channel = envelope.data().try_channel().map_err(|e| {
            self.failed(PublishError::new(
                PublishErrorKind::Encode,
                format!("could not publish `{}`: {e}", E::TYPE),
            ))
        })?;
        let span = observe::producer(Produce::Publish, &channel, E::TYPE, envelope.id());
        observe::stamp(&mut envelope, &span);
        let result = observe::within(&span, self.encode_and_send(&envelope, &channel)).await;
        match &result {
            Ok(PublishReceipt {
                entry_id: Some(entry),
                ..
            }) => {
                span.record("eventbus.entry_id", entry.as_str());
            }
            Ok(_) => {}
            Err(e) => {
                observe::publish_failed(&span, e);
                span.in_scope(|| tracing::debug!(error = %e, "publish failed"));
            }
        }
        result
    }

    async fn encode_and_send<E: Event>(
        &self,
        envelope: &Envelope<E>,
        channel: &str,
    ) -> Result<PublishReceipt, PublishError> {
        let bytes = self.encode(envelope).map_err(|e| {
            self.failed(
                PublishError::new(
                    PublishErrorKind::Encode,
                    format!("could not encode `{}`: {e}", E::TYPE),
                )
                .with_source(e),
            )
        })?;
        let (receivers, entry_id) = if E::DURABLE {
            let entry = self.append(channel, Bytes::from(bytes)).await?;
            (1, Some(entry))
        } else {
            let sharded = E::PATTERN.is_none();
            (
                self.send_as(channel, Bytes::from(bytes), sharded).await?,
                None,
            )
        };
        self.inner
            .stats
            .with_event::<E, _>(|t| t.published.fetch_add(1, Ordering::Relaxed));
        Ok(PublishReceipt {
            id: envelope.id().to_owned(),
            channel: channel.to_owned(),
            receivers,
            entry_id,
        })
    }

    /// Encodes an envelope into a buffer the size of the type's longest envelope so far, so
    /// that it is not grown while written.
    pub(super) fn encode<E: Event>(&self, envelope: &Envelope<E>) -> Result<Vec<u8>, EncodeError> {
        let stats = &self.inner.stats;
        let longest = stats.with_event::<E, _>(|t| t.encoded_len.load(Ordering::Relaxed));
        let mut buf = Vec::with_capacity(longest.clamp(MIN_BUFFER, MAX_BUFFER));
        envelope.encode_into(&mut buf)?;
        if buf.len() > longest {
            stats.with_event::<E, _>(|t| t.encoded_len.fetch_max(buf.len(), Ordering::Relaxed));
        }
        Ok(buf)
    }

    /// Publishes a payload as it is, with no envelope, for subscribers that expect plain text.
    ///
    /// It goes out as a classic `PUBLISH`, as plain Redis clients publish and subscribe: on a
    /// Redis Cluster it reaches every node, so channel and pattern subscribers anywhere hear it.
    /// To keep it within its channel's shard, use
    /// [`publish_raw_sharded`](Self::publish_raw_sharded).
    pub async fn publish_raw(
        &self,
        channel: &str,
        payload: impl Into<Bytes>,
    ) -> Result<RawReceipt, PublishError> {
        self.publish_raw_as(channel, payload.into(), false).await
    }

    /// Publishes a payload as it is on a sharded channel: on a Redis Cluster a `SPUBLISH`,
    /// which travels only within the shard serving the channel's slot and reaches the channel's
    /// subscribers (the bus's channel handlers, and plain clients that `SSUBSCRIBE`), never a
    /// pattern. Elsewhere the same as [`publish_raw`](Self::publish_raw).
    pub async fn publish_raw_sharded(
        &self,
        channel: &str,
        payload: impl Into<Bytes>,
    ) -> Result<RawReceipt, PublishError> {
        self.publish_raw_as(channel, payload.into(), true).await
    }

    /// A raw publish on a checked channel name, sharded or classic.
    async fn publish_raw_as(
        &self,
        channel: &str,
        payload: Bytes,
        sharded: bool,
    ) -> Result<RawReceipt, PublishError> {
        check_name("channel", channel)
            .map_err(|why| PublishError::new(PublishErrorKind::Config, why))?;
        let receivers = self.send_as(channel, payload, sharded).await?;
        Ok(RawReceipt {
            channel: channel.to_owned(),
            receivers,
            entry_id: None,
        })
    }

    /// Appends a durable event to its stream, counting the outcome as a publish.
    pub(super) async fn append(
        &self,
        stream: &str,
        payload: Bytes,
    ) -> Result<String, PublishError> {
        self.refuse(&payload)?;
        let transport = self.inner.transport();
        self.counted(transport.append(stream, payload), 1).await
    }

    /// Awaits a transport's publish or append of `n` messages, counting its outcome and
    /// latency.
    pub(super) async fn counted<T>(
        &self,
        sent: impl Future<Output = Result<T, TransportError>>,
        n: u64,
    ) -> Result<T, PublishError> {
        let stats = &self.inner.stats;
        let started = Instant::now();
        let result = sent.await;
        match &result {
            Ok(_) => {
                stats.published.fetch_add(n, Ordering::Relaxed);
                stats.publish_latency.record(started.elapsed());
            }
            Err(_) => {
                stats.publish_errors.fetch_add(n, Ordering::Relaxed);
            }
        }
        result.map_err(PublishError::from)
    }

    /// Why a payload cannot be sent now, if it cannot; counted as a publish error.
    pub(super) fn refuse(&self, payload: &Bytes) -> Result<(), PublishError> {
        let refused = if let Some(why) = self.inner.runtime_gone() {
            Some(PublishError::new(PublishErrorKind::Closed, why))
        } else if self.inner.phase() == Phase::Closed {
            Some(PublishError::new(
                PublishErrorKind::Closed,
                "the bus has been shut down",
            ))
        } else if payload.len() > self.inner.max_message_size {
            Some(PublishError::new(
                PublishErrorKind::TooLarge,
                format!(
                    "message of {} bytes exceeds the maximum of {} bytes",
                    payload.len(),
                    self.inner.max_message_size
                ),
            ))
        } else {
            None
        };
        match refused {
            Some(e) => Err(self.failed(e)),
            None => Ok(()),
        }
    }

    /// Counts a publish that failed before reaching the transport.
    pub(super) fn failed(&self, e: PublishError) -> PublishError {
        self.inner
            .stats
            .publish_errors
            .fetch_add(1, Ordering::Relaxed);
        e
    }

    /// Sends bytes through the transport, counting the outcome. Works until shutdown has
    /// drained the handlers, so that they can publish follow-ups while draining.
    pub(super) async fn send(&self, channel: &str, payload: Bytes) -> Result<u64, PublishError> {
        self.send_as(channel, payload, false).await
    }

    /// [`send`](Self::send) on a sharded channel when `sharded` (see
    /// [`Transport::publish_sharded`](crate::transport::Transport::publish_sharded)).
    pub(super) async fn send_as(
        &self,
        channel: &str,
        payload: Bytes,
        sharded: bool,
    ) -> Result<u64, PublishError> {
        self.refuse(&payload)?;
        let transport = self.inner.transport();
        if sharded {
            return self
                .counted(transport.publish_sharded(channel, payload), 1)
                .await;
        }
        self.counted(transport.publish(channel, payload), 1).await
    }
}
