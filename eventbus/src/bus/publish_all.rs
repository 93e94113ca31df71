//! Publishing many events of one type at once: every envelope encoded first, then sent as
//! pipelines (`PUBLISH`, or `XADD` for a durable type). On a Redis Cluster they follow the rule
//! of single publishes: `SPUBLISH` for a type with a fixed channel, `PUBLISH` for a keyed one.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::Span;

use super::{EventBus, PublishReceipt};
use crate::envelope::Envelope;
use crate::error::{PublishError, PublishErrorKind};
use crate::event::Event;
use crate::observe::{self, Produce};

impl EventBus {
    /// Publishes many events of one type as one batch and returns their receipts, in order.
    /// On Redis they leave as pipelines of up to 512 commands (`PUBLISH`, or `XADD` for a
    /// durable type), a few in flight: far fewer round trips than one `publish` each.
    ///
    /// Every event is encoded and checked before anything is sent: an event that cannot be
    /// encoded, or is too large, fails the call with nothing sent. A failure while sending
    /// (the connection lost past the publish deadline) fails the call too, and some of the
    /// events may have been sent; for a durable type, publish the same envelopes again with
    /// [`publish_envelope`](Self::publish_envelope) and de-duplicate on the consumer side
    /// ([`DurableOptions::dedupe`](crate::DurableOptions::dedupe)).
    ///
    /// ```
    /// # use eventbus::{Event, EventBus};
    /// # #[derive(serde::Serialize, serde::Deserialize, Event)] struct PriceSet { sku: u64 }
    /// # async fn run(bus: EventBus) -> Result<(), eventbus::PublishError> {
    /// let receipts = bus.publish_all((0..1000).map(|sku| PriceSet { sku })).await?;
    /// assert_eq!(receipts.len(), 1000);
    /// # Ok(()) }
    /// ```
    pub async fn publish_all<E: Event>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Result<Vec<PublishReceipt>, PublishError> {
        let mut ids = Vec::new();
        let mut batch = Vec::new();
        let mut span = None;
        for event in events {
            let (id, channel, payload) = self.prepare(Envelope::new(event), &mut span)?;
            ids.push(id);
            batch.push((channel, payload));
        }
        let Some(span) = span else {
            return Ok(Vec::new());
        };
        span.record("messaging.batch.message_count", batch.len());
        let result = observe::within(&span, self.send_batch::<E>(ids, batch)).await;
        if let Err(e) = &result {
            observe::publish_failed(&span, e);
        }
        result
    }

    /// Sends a prepared batch, in pipelines, and returns its receipts.
    async fn send_batch<E: Event>(
        &self,
        ids: Vec<String>,
        batch: Vec<(String, Bytes)>,
    ) -> Result<Vec<PublishReceipt>, PublishError> {
        let n = batch.len() as u64;
        let transport = self.inner.transport();
        let sent: Vec<(u64, Option<String>)> = if E::DURABLE {
            let entries = self.counted(transport.append_many(&batch), n).await?;
            entries.into_iter().map(|e| (1, Some(e))).collect()
        } else {
            let sent = if E::PATTERN.is_none() {
                transport.publish_many_sharded(&batch)
            } else {
                transport.publish_many(&batch)
            };
            let receivers = self.counted(sent, n).await?;
            receivers.into_iter().map(|r| (r, None)).collect()
        };
        let stats = &self.inner.stats;
        stats.with_event::<E, _>(|t| t.published.fetch_add(n, Ordering::Relaxed));
        let receipts = ids.into_iter().zip(batch).zip(sent);
        Ok(receipts
            .map(
                |((id, (channel, _)), (receivers, entry_id))| PublishReceipt {
                    id,
                    channel,
                    receivers,
                    entry_id,
                },
            )
            .collect())
    }

    /// An envelope's id, channel and bytes, checked as a publish checks them, and stamped under
    /// the batch's span (opened for the first envelope, on its channel).
    fn prepare<E: Event>(
        &self,
        mut envelope: Envelope<E>,
        span: &mut Option<Span>,
    ) -> Result<(String, String, Bytes), PublishError> {
        if envelope.source.is_empty() {
            envelope.source = self.inner.service.clone();
        }
        let refused = |what: &str, e: &dyn std::fmt::Display| {
            self.failed(PublishError::new(
                PublishErrorKind::Encode,
                format!("could not {what} `{}`: {e}", E::TYPE),
            ))
        };
        let channel = envelope
            .data()
            .try_channel()
            .map_err(|e| refused("publish", &e))?;
        let span = span.get_or_insert_with(|| {
            observe::producer(Produce::PublishAll, &channel, E::TYPE, envelope.id())
        });
        observe::stamp(&mut envelope, span);
        let bytes = self.encode(&envelope).map_err(|e| refused("encode", &e))?;
        let payload = Bytes::from(bytes);
        self.refuse(&payload)?;
        Ok((envelope.id().to_owned(), channel.into_owned(), payload))
    }
}
