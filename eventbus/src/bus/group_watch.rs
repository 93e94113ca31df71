//! Keeps durable handlers' group metrics fresh: each consumer group's state is read from the
//! server about once a second, for [`EventBus::metrics`](super::EventBus::metrics) and the
//! metrics export.

use std::sync::Arc;
use std::time::Duration;

use crate::Topic;
use crate::metrics::GroupMetrics;
use crate::runtime::{Router, Slot};
use crate::sync::write;
use crate::transport::{ErrorKind, Transport, TransportError};

/// How often the groups are read.
const INTERVAL: Duration = Duration::from_secs(1);

/// The stream a durable handler reads, with its group.
pub(super) fn group_of(slot: &Slot) -> Option<(&str, &str)> {
    match (slot.topics.first(), slot.group.as_deref()) {
        (Some(Topic::Channel(stream)), Some(group)) => Some((stream, group)),
        _ => None,
    }
}

/// Reads every durable handler's group state every [`INTERVAL`], until the bus closes, or for
/// good once the transport says it cannot.
pub(super) async fn watch(router: Arc<Router>, transport: Arc<dyn Transport>) {
    loop {
        tokio::time::sleep(INTERVAL).await;
        for slot in router.slots() {
            if let Err(e) = refresh(&slot, &*transport).await
                && e.kind() == ErrorKind::Unsupported
            {
                return;
            }
        }
    }
}

/// Reads one handler's group; a failed read keeps the last figures.
async fn refresh(slot: &Slot, transport: &dyn Transport) -> Result<(), TransportError> {
    let Some((stream, group)) = group_of(slot) else {
        return Ok(());
    };
    let groups = transport.stream_groups(stream).await?;
    let mine = groups.into_iter().find(|g| g.group == group);
    *write(&slot.stats.group) = mine.map(GroupMetrics::from);
    Ok(())
}
