//! Handlers registered after start-up, and how they end.

use std::sync::{Arc, Weak};

use super::builder::{check_state, slot_spec};
use super::{BusInner, EventBus, Phase};
use crate::Topic;
use crate::error::{SubscribeError, SubscribeErrorKind};
use crate::handler::Handler;
use crate::options::HandlerOptions;
use crate::runtime::{Slot, SlotSpec};

fn closed() -> SubscribeError {
    SubscribeError::new(SubscribeErrorKind::Closed, "the bus has been shut down")
}

impl EventBus {
    /// Registers a handler after start-up; it receives events until the returned
    /// [`Subscription`] is ended or dropped.
    pub async fn subscribe<T, H: Handler<T>>(
        &self,
        handler: H,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_with(HandlerOptions::new(), handler).await
    }

    /// [`subscribe`](Self::subscribe) with options (topic, queue, timeout, retries).
    pub async fn subscribe_with<T, H: Handler<T>>(
        &self,
        options: HandlerOptions,
        handler: H,
    ) -> Result<Subscription, SubscribeError> {
        let spec = slot_spec(handler, options)
            .map_err(|why| SubscribeError::new(SubscribeErrorKind::Config, why))?;
        #[cfg(feature = "postgres")]
        let inbox = self.inner.runtime.inbox.is_some();
        #[cfg(not(feature = "postgres"))]
        let inbox = false;
        check_state(&spec, &self.inner.state, inbox)
            .map_err(|why| SubscribeError::new(SubscribeErrorKind::Config, why))?;
        self.attach(spec, true).await.map(|(sub, _)| sub)
    }

    /// Refuses a durable handler whose consumer group a handler of this bus already reads.
    fn check_group(&self, spec: &SlotSpec) -> Result<(), SubscribeError> {
        #[cfg(feature = "postgres")]
        self.check_inbox_scope(spec)?;
        let Some(group) = super::groups::group_name(&self.inner.service, spec) else {
            return Ok(());
        };
        let slots = self.inner.router.slots();
        match slots
            .iter()
            .find(|s| s.group.as_deref() == Some(group.as_str()))
        {
            Some(held) => Err(SubscribeError::new(
                SubscribeErrorKind::Config,
                super::groups::shared_group(&group, &[&held.name, &spec.name]),
            )),
            None => Ok(()),
        }
    }

    /// Refuses a handler taking a `Tx` whose inbox scope a handler of this bus already has.
    #[cfg(feature = "postgres")]
    fn check_inbox_scope(&self, spec: &SlotSpec) -> Result<(), SubscribeError> {
        let Some(scope) = super::groups::inbox_scope(&self.inner.service, spec) else {
            return Ok(());
        };
        let slots = self.inner.router.slots();
        match slots
            .iter()
            .find(|s| s.inbox_scope.as_deref() == Some(scope.as_str()))
        {
            Some(held) => Err(SubscribeError::new(
                SubscribeErrorKind::Config,
                super::groups::shared_scope(&scope, &[&held.name, &spec.name]),
            )),
            None => Ok(()),
        }
    }

    /// Registers a slot and subscribes its new topics, in order with other changes.
    pub(super) async fn attach(
        &self,
        spec: SlotSpec,
        worker: bool,
    ) -> Result<(Subscription, Arc<Slot>), SubscribeError> {
        if let Some(why) = self.inner.runtime_gone() {
            return Err(SubscribeError::new(SubscribeErrorKind::Closed, why));
        }
        if self.inner.phase() != Phase::Running {
            return Err(closed());
        }
        let ordered = self.inner.sub_lock.lock().await;
        self.check_group(&spec)?;
        let (slot, fresh) = self.register(spec, worker);
        let mut sub = Subscription {
            bus: Arc::downgrade(&self.inner),
            id: slot.id,
            topics: slot.topics.clone(),
            active: true,
        };
        if self.inner.phase() != Phase::Running {
            // Shutdown began meanwhile and will not wait for this handler.
            drop(ordered);
            sub.end_now();
            return Err(closed());
        }
        let subscribed = if fresh.is_empty() {
            Ok(())
        } else {
            self.inner.transport().subscribe(&fresh).await
        };
        if let Err(e) = subscribed.and(self.join(&slot).await) {
            drop(ordered);
            sub.end_now();
            return Err(e.into());
        }
        Ok((sub, slot))
    }
}

/// A handler registered after start-up. Ends on [`unsubscribe`](Self::unsubscribe) or drop:
/// no new events reach the handler; what is already queued still runs.
#[derive(Debug)]
#[must_use = "dropping a Subscription ends it at once"]
pub struct Subscription {
    bus: Weak<BusInner>,
    id: u64,
    topics: Vec<Topic>,
    active: bool,
}

impl Subscription {
    /// The topics it listens on.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// Ends the subscription, unsubscribing topics no other handler holds.
    ///
    /// The server is told first, so events it sent before the unsubscribe still reach the
    /// handler; dropping the subscription instead ends it at once, and events already on
    /// their way are dropped (counted as `unrouted` in the metrics).
    pub async fn unsubscribe(mut self) -> Result<(), SubscribeError> {
        let Some(inner) = self.bus.upgrade() else {
            self.active = false;
            return Ok(());
        };
        let ordered = inner.sub_lock.lock().await;
        let running = || inner.phase() == Phase::Running;
        let last = inner.router.topics_held_only_by(self.id);
        // If this future is dropped during the await, `Drop` still removes the handler.
        let told = if !last.is_empty() && running() {
            inner.transport().unsubscribe(&last).await
        } else {
            Ok(())
        };
        self.active = false;
        let gone = remove_slot(&inner, self.id);
        let rest: Vec<Topic> = gone.into_iter().filter(|t| !last.contains(t)).collect();
        let result = if !rest.is_empty() && running() {
            told.and(inner.transport().unsubscribe(&rest).await)
        } else {
            told
        };
        drop(ordered);
        Ok(result?)
    }

    pub(super) fn end_now(&mut self) {
        if !std::mem::replace(&mut self.active, false) {
            return;
        }
        let Some(inner) = self.bus.upgrade() else {
            return;
        };
        let gone = remove_slot(&inner, self.id);
        if gone.is_empty() || inner.phase() != Phase::Running {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner2 = inner.clone();
            inner.tasks.spawn(Some(&rt), async move {
                let inner = inner2;
                let _ordered = inner.sub_lock.lock().await;
                // A newer handler may hold a topic again by now: leave those subscribed.
                let held = inner.router.topics();
                let gone: Vec<Topic> = gone.into_iter().filter(|t| !held.contains(t)).collect();
                if gone.is_empty() || inner.phase() != Phase::Running {
                    return;
                }
                if let Err(e) = inner.transport().unsubscribe(&gone).await {
                    tracing::warn!(error = %e, "unsubscribing a dropped subscription failed");
                }
            });
        }
    }
}

/// Removes a handler; returns the topics no handler holds any more. A durable handler's
/// group stops being read (what it read and did not finish stays pending for the others).
fn remove_slot(inner: &Arc<BusInner>, id: u64) -> Vec<Topic> {
    let (slot, gone) = inner.router.remove(id);
    let Some(slot) = slot else {
        return gone;
    };
    slot.close();
    if let Some(group) = slot.group.clone()
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        let inner2 = inner.clone();
        inner.tasks.spawn(Some(&rt), async move {
            let inner = inner2;
            // A newer handler of the same group may have joined meanwhile: it keeps reading.
            if inner
                .router
                .slots()
                .iter()
                .any(|s| s.group.as_ref() == Some(&group))
            {
                return;
            }
            if let Err(e) = inner.transport().leave(&group).await {
                tracing::warn!(error = %e, group = %group, "leaving a consumer group failed");
            }
        });
    }
    gone
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.end_now();
    }
}
