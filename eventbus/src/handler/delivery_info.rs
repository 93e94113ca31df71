//! What a handler may learn about the delivery it runs for: the attempt, and for durable
//! events the delivery count, the entry and whether it was claimed from a dead consumer.

use super::context::{FromContext, HandlerContext};

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
}

tokio::task_local! {
    static CURRENT: DeliveryInfo;
}

/// Runs `f`, in which a handler's arguments are made, with `info` as the current delivery.
pub(crate) fn scope<R>(info: DeliveryInfo, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(info, f)
}

impl DeliveryInfo {
    /// The information of a message's delivery, on its `attempt`.
    pub(crate) fn of(message: &crate::transport::Message, attempt: u32) -> Self {
        let ack = message.ack.as_ref();
        DeliveryInfo {
            attempt,
            deliveries: ack.map_or(1, |a| a.deliveries),
            entry_id: ack.map(|a| a.entry_id.to_string()),
            claimed: ack.is_some_and(|a| a.claimed),
        }
    }
}

impl FromContext for DeliveryInfo {
    fn from_context(_: &HandlerContext) -> Result<Self, String> {
        CURRENT
            .try_with(Clone::clone)
            .map_err(|_| "no delivery is being handled".to_owned())
    }
}
