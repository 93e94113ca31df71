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

/// Stores a dead letter for `delivery`, or says why it could not: the store's own error, its
/// causes included.
///
/// It goes under the handler's event type (`eventbus:dead:<type>` on Redis), not the type the
/// message claims: whoever can write to a channel or a stream cannot make the bus create dead
/// letter streams of any name. Only a pattern or raw handler's dead letters go under the
/// message's own type.
pub(crate) async fn store(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    attempts: u32,
    error: String,
) -> Result<(), String> {
    let Some(store) = rt.transport.dead_letter_store() else {
        return Err("this transport keeps no dead letters".to_owned());
    };
    let event_type = match (&*slot.event_type, delivery.raw.as_deref()) {
        ("*", Some(raw)) => raw.event_type().to_owned(),
        (own, _) => own.to_owned(),
    };
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
            Ok(())
        }
        Ok(Err(e)) => Err(chain(&e)),
        Err(_) => Err(format!("the store did not answer within {STORE_TIMEOUT:?}")),
    }
}

/// Stores a dead letter for a pub/sub event; a failure to store it is reported, never lost
/// silently.
pub(crate) async fn store_or_report(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    attempts: u32,
    error: String,
) {
    if let Err(error) = store(rt, slot, delivery, attempts, error).await {
        rt.hooks.report(Failure::DeadLetter {
            handler: slot.name.clone(),
            error,
        });
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
