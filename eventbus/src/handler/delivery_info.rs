//! What a handler may learn about the delivery it runs for: the attempt, and for durable
//! events the delivery count, the entry and whether it was claimed from a dead consumer.

use super::context::{FromContext, HandlerContext};
use crate::transport::Ack;

/// The delivery a handler runs for, as an extra handler argument.
///
/// ```
/// use eventbus::{DeliveryInfo, Event};
/// # #[derive(serde::Serialize, serde::Deserialize, Event)]
/// # #[event(name = "invoice_due", durable)]
/// # struct InvoiceDue { id: u64 }
///
/// async fn remind(due: InvoiceDue, delivery: DeliveryInfo) {
///     if delivery.deliveries > 1 {
///         // Seen before: a crash or a claim between the last run and its acknowledgement.
///     }
/// # let _ = due;
/// }
/// # let _ = eventbus::EventBus::builder().handler(remind);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryInfo {
    /// Which run of the retry policy this is, from 1.
    pub attempt: u32,
    /// How many times the entry has been delivered, this time included: 1 for pub/sub events.
    pub deliveries: u32,
    /// The entry's id in its stream, for a durable event.
    pub entry_id: Option<String>,
    /// Whether the entry was claimed from another consumer, presumed dead.
    pub claimed: bool,
    /// How many delayed retries ([`RetryPolicy::then_delayed`](crate::RetryPolicy::then_delayed))
    /// brought the entry back: 0 on its first delivery from its stream.
    pub delayed: u32,
}

tokio::task_local! {
    /// The attempt and the acknowledgement handle of the delivery whose arguments are being
    /// made: cheap to set for every run, turned into a [`DeliveryInfo`] only when a handler
    /// asks for one.
    static CURRENT: (u32, Option<Ack>);
}

/// Runs `f`, in which a handler's arguments are made, with the delivery acknowledged by `ack`
/// (none for pub/sub) on its `attempt` as the current one.
pub(crate) fn scope<R>(attempt: u32, ack: Option<Ack>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope((attempt, ack), f)
}

impl FromContext for DeliveryInfo {
    fn from_context(_: &HandlerContext) -> Result<Self, String> {
        CURRENT
            .try_with(|(attempt, ack)| DeliveryInfo {
                attempt: *attempt,
                deliveries: ack.as_ref().map_or(1, |a| a.deliveries),
                entry_id: ack.as_ref().map(|a| a.entry_id.to_string()),
                claimed: ack.as_ref().is_some_and(|a| a.claimed),
                delayed: ack.as_ref().map_or(0, |a| a.delayed),
            })
            .map_err(|_| "no delivery is being handled".to_owned())
    }
}
