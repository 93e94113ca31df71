//! Pull-style streams of typed events.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;

use super::EventBus;
use super::builder::slot_spec;
use super::subscription::Subscription;
use crate::envelope::Envelope;
use crate::error::SubscribeError;
use crate::event::Event;
use crate::handler::{EventArg, marker};
use crate::options::HandlerOptions;
use crate::runtime::Slot;

impl EventBus {
    /// A pull-style stream of the events of type `E`, for code that prefers a loop to a
    /// handler. It holds up to 8192 undelivered events (the default queue capacity; a full
    /// buffer drops by the overflow policy, counted). It ends when it is dropped or
    /// unsubscribed, and when the bus shuts down, after yielding what it still holds;
    /// shutdown does not wait for the stream to be read.
    ///
    /// ```
    /// # use eventbus::{Event, EventBus};
    /// # use futures_util::StreamExt;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize, Event)] struct Tick { n: u32 }
    /// # async fn run(bus: EventBus) -> anyhow::Result<()> {
    /// let mut ticks = bus.stream::<Tick>().await?;
    /// bus.publish(Tick { n: 1 }).await?;
    /// let next = tokio::time::timeout(std::time::Duration::from_secs(1), ticks.next()).await;
    /// # Ok(()) }
    /// ```
    pub async fn stream<E: Event>(&self) -> Result<EventStream<E>, SubscribeError> {
        self.stream_with(HandlerOptions::new()).await
    }

    /// [`stream`](Self::stream) with options (topic, buffer size, overflow policy).
    pub async fn stream_with<E: Event>(
        &self,
        options: HandlerOptions,
    ) -> Result<EventStream<E>, SubscribeError> {
        let options = if options.name.is_none() {
            options.name(format!("stream<{}>", E::TYPE))
        } else {
            options
        };
        // The slot's handler never runs: the stream takes from the queue itself.
        let never = |_: Envelope<E>| async {};
        let spec = slot_spec(never, options)
            .map_err(|why| SubscribeError::new(crate::SubscribeErrorKind::Config, why))?;
        let (subscription, slot) = self.attach(spec, false).await?;
        Ok(EventStream {
            items: Box::pin(futures_util::stream::unfold(slot, next_event::<E>)),
            subscription,
        })
    }
}

/// The next decodable event of the slot's queue; `None` once it is closed and empty.
async fn next_event<E: Event>(slot: Arc<Slot>) -> Option<(Envelope<E>, Arc<Slot>)> {
    loop {
        let mut delivery = slot.queue.pop().await?;
        match <Envelope<E> as EventArg<marker::Full>>::extract(&mut delivery) {
            Ok(envelope) => {
                slot.stats.handled.fetch_add(1, Ordering::Relaxed);
                return Some((envelope, slot));
            }
            Err(_) => {
                slot.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A stream of typed events: see [`EventBus::stream`].
pub struct EventStream<E> {
    items: BoxStream<'static, Envelope<E>>,
    subscription: Subscription,
}

impl<E> std::fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl<E> EventStream<E> {
    /// Ends the stream and its subscription.
    pub async fn unsubscribe(self) -> Result<(), SubscribeError> {
        self.subscription.unsubscribe().await
    }
}

impl<E> futures_util::Stream for EventStream<E> {
    type Item = Envelope<E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.items.as_mut().poll_next(cx)
    }
}
