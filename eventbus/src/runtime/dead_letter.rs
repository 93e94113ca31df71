//! Storing the events a handler gave up on, in the transport's dead-letter store.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Runtime;
use super::slot::Slot;
use crate::error::Failure;
use crate::handler::Delivery;
use crate::transport::DeadLetter;

/// How long storing one dead letter may take before it is reported as failed.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Stores a dead letter for `delivery`; a failure to store it is reported, never lost silently.
pub(crate) async fn store(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    attempts: u32,
    error: String,
) {
    let report = |error: String| {
        rt.hooks.report(Failure::DeadLetter {
            handler: slot.name.clone(),
            error,
        })
    };
    let Some(store) = rt.transport.dead_letter_store() else {
        report("this transport keeps no dead letters".to_owned());
        return;
    };
    let event_type = delivery
        .raw
        .as_deref()
        .map(|r| r.event_type().to_owned())
        .unwrap_or_else(|| slot.event_type.to_string());
    let letter = DeadLetter {
        entry_id: String::new(),
        event_type,
        channel: delivery.message.channel.to_string(),
        handler: slot.name.to_string(),
        error,
        attempts,
        payload: delivery.message.payload.clone(),
        durable: delivery.message.ack.is_some(),
    };
    match tokio::time::timeout(STORE_TIMEOUT, store.store(&letter)).await {
        Ok(Ok(_)) => {
            slot.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => report(e.to_string()),
        Err(_) => report(format!("the store did not answer within {STORE_TIMEOUT:?}")),
    }
}
