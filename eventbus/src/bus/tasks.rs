//! The bus's own background tasks: the group watch, the runtime watch and the clean-ups of
//! dropped subscriptions. Each is tracked, ends when the bus shuts down, and shutdown waits for
//! it. (The handlers' runs are the runtime's, which shutdown drains first.)

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The bus's own tasks and what ends them.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// Fires when the tasks are told to end.
    pub(super) fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Runs `task` on `runtime` (the current one when `None`) until it ends or the tasks are
    /// ended, tracked.
    pub(super) fn spawn(
        &self,
        runtime: Option<&tokio::runtime::Handle>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let cancel = self.cancel.clone();
        let task = async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        };
        match runtime {
            Some(rt) => drop(self.tracker.spawn_on(task, rt)),
            None => drop(self.tracker.spawn(task)),
        }
    }

    /// Tells every task to end and waits up to `within` for them.
    pub(super) async fn end(&self, within: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(within, self.tracker.wait()).await;
    }
}

impl Drop for Tasks {
    /// The last handle of the bus went without `shutdown()`: the tasks end all the same.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
