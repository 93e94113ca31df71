//! Whether a bus has nothing left to do: no queued or running handler, and no durable entry
//! waiting in its groups. For tests that must wait for the work an event caused.

use super::EventBus;
use super::group_watch::group_of;

impl EventBus {
    /// What the bus is still busy with, or `None` when every handler queue is empty, no run is
    /// in flight, and every durable handler's group has nothing new and nothing pending.
    pub(crate) async fn busy(&self) -> Option<String> {
        for slot in self.inner.router.slots() {
            let (queued, running) = (slot.queue.len(), slot.running());
            if queued > 0 || running > 0 {
                return Some(format!(
                    "handler `{}`: {queued} queued, {running} running",
                    slot.name
                ));
            }
            let Some((stream, group)) = group_of(&slot) else {
                continue;
            };
            let groups = match self.inner.transport().stream_groups(stream).await {
                Ok(groups) => groups,
                Err(e) => return Some(format!("group `{group}`: {e}")),
            };
            if let Some(g) = groups.iter().find(|g| g.group == group)
                && (g.pending > 0 || g.lag != Some(0))
            {
                return Some(format!(
                    "group `{group}` of handler `{}`: {} pending, lag {:?}",
                    slot.name, g.pending, g.lag
                ));
            }
        }
        None
    }
}
