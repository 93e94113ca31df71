//! Opt-in de-duplication of a durable handler's events by envelope id: asked before a run,
//! recorded after a successful one and before the acknowledgement.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Runtime;
use super::slot::Slot;
use crate::error::Failure;
use crate::handler::Delivery;
use crate::transport::DedupeStore;

/// How long a store operation may take before the handler goes on without it.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The de-duplication of one delivery: the store, the group and the event id.
pub(crate) struct Dedupe<'a> {
    store: &'a dyn DedupeStore,
    rt: &'a Runtime,
    slot: &'a Slot,
    id: String,
    window: Duration,
}

impl<'a> Dedupe<'a> {
    /// The de-duplication for `delivery`, when its handler asked for it and the message is a
    /// durable entry with an envelope id. A transport without a store is reported once per
    /// delivery and the handler runs.
    pub(crate) fn of(rt: &'a Runtime, slot: &'a Slot, delivery: &Delivery) -> Option<Self> {
        let window = slot.options.durable.dedupe?;
        slot.group.as_ref()?;
        let id = delivery.event_id()?.to_owned();
        let Some(store) = rt.transport.dedupe_store() else {
            report(
                rt,
                slot,
                "this transport keeps no de-duplication records".to_owned(),
            );
            return None;
        };
        Some(Dedupe {
            store,
            rt,
            slot,
            id,
            window,
        })
    }

    fn scope(&self) -> &str {
        self.slot.group.as_deref().unwrap_or_default()
    }

    /// Whether the group handled this event already; counted as a duplicate when so. A store
    /// that fails says no, so the handler runs.
    pub(crate) async fn seen(&self) -> bool {
        let asked = tokio::time::timeout(STORE_TIMEOUT, self.store.seen(self.scope(), &self.id));
        match asked.await {
            Ok(Ok(seen)) => {
                if seen {
                    self.slot.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                seen
            }
            Ok(Err(e)) => {
                report(self.rt, self.slot, e.to_string());
                false
            }
            Err(_) => {
                report(self.rt, self.slot, timed_out());
                false
            }
        }
    }

    /// Records the event as handled by the group.
    pub(crate) async fn record(&self) {
        let recorded = self.store.record(self.scope(), &self.id, self.window);
        match tokio::time::timeout(STORE_TIMEOUT, recorded).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => report(self.rt, self.slot, e.to_string()),
            Err(_) => report(self.rt, self.slot, timed_out()),
        }
    }
}

fn timed_out() -> String {
    format!("the store did not answer within {STORE_TIMEOUT:?}")
}

fn report(rt: &Runtime, slot: &Slot, error: String) {
    rt.hooks.report(Failure::Dedupe {
        handler: slot.name.clone(),
        error,
    });
}
