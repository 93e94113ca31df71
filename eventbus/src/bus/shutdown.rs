//! Shutting down: stop intake, drain the handlers (they may still publish and dead-letter),
//! then close the transport.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{BusInner, EventBus, Phase};
use crate::error::{ShutdownError, ShutdownReport};
use crate::runtime::{Slot, current_run};
use crate::transport::TransportError;

/// How long stopping intake and closing the transport may each take.
const TRANSPORT_STEP: Duration = Duration::from_secs(5);

impl EventBus {
    /// Stops intake, lets queued and running handlers finish until the shutdown timeout, then
    /// drops what is left, closes the transport and says how much was left.
    ///
    /// While draining, handlers can still publish follow-ups and store dead letters; new
    /// subscriptions are refused. Publishing after shutdown fails with
    /// [`PublishErrorKind::Closed`](crate::PublishErrorKind::Closed). Pull streams end after
    /// yielding what they hold; shutdown does not wait for them to be read.
    ///
    /// Every call, concurrent ones included, returns when the one drain is done, with the same
    /// outcome. Called from inside one of this bus's handlers, it waits for every other run;
    /// events queued behind the calling handler are dropped and counted as unprocessed.
    ///
    /// Returns an error carrying the [`ShutdownReport`] when events were left unprocessed.
    pub async fn shutdown(&self) -> Result<ShutdownReport, ShutdownError> {
        let inner = &self.inner;
        inner
            .shutdown
            .get_or_init(|| drain_and_close(inner.clone()))
            .await
            .clone()
    }

    /// Runs until `signal` completes, then shuts down. With [`shutdown_signal`] a service stops
    /// cleanly on Ctrl-C or SIGTERM:
    ///
    /// ```no_run
    /// # async fn run(bus: eventbus::EventBus) -> anyhow::Result<()> {
    /// bus.run_until(eventbus::shutdown_signal()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(
        &self,
        signal: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ShutdownError> {
        signal.await;
        self.shutdown().await
    }
}

async fn drain_and_close(inner: Arc<BusInner>) -> Result<ShutdownReport, ShutdownError> {
    inner.set_phase(Phase::Draining);
    // Wait for subscription changes under way, so every handler is in the list below.
    drop(inner.sub_lock.lock().await);
    let slots = inner.router.slots();
    let before: u64 = slots.iter().map(|s| s.finished()).sum();
    stop_intake(&inner, &slots).await;
    let caller = current_run(&inner.runtime);
    let (mut unprocessed, mut left_pending) = (0, 0);
    for slot in &slots {
        if slot.group.is_some() {
            // Not started: stays pending in the group, for the next consumer.
            slot.close();
            left_pending += slot.queue.clear() as u64;
        } else if Some(slot.id) == caller {
            // Queued behind the calling run: cannot run before this call returns.
            slot.close();
            unprocessed += slot.queue.clear() as u64;
        }
    }
    let settled = settle(&inner, &slots, caller).await;
    for slot in &slots {
        slot.close();
    }
    if !settled || !workers_ended(&inner, caller).await {
        for slot in slots.iter().filter(|s| Some(s.id) != caller) {
            unprocessed += slot.abandon();
        }
    }
    let report = ShutdownReport {
        drained: slots.iter().map(|s| s.finished()).sum::<u64>() - before,
        unprocessed,
        left_pending,
    };
    inner.set_phase(Phase::Closed);
    close_transport(&inner).await;
    inner.tasks.end(TRANSPORT_STEP).await;
    // Last, with no await after it: a run that called this ends with its slot's token.
    inner.cancel.cancel();
    if report.unprocessed > 0 {
        tracing::warn!(
            unprocessed = report.unprocessed,
            "shutdown left events unprocessed"
        );
        Err(ShutdownError { report })
    } else {
        Ok(report)
    }
}

/// Unsubscribes every topic and stops reading every consumer group, so nothing new arrives
/// while the handlers drain.
async fn stop_intake(inner: &BusInner, slots: &[Arc<Slot>]) {
    let transport = inner.transport();
    let topics = inner.router.topics();
    if !topics.is_empty() {
        step("unsubscribing", transport.unsubscribe(&topics)).await;
    }
    for group in slots.iter().filter_map(|s| s.group.as_deref()) {
        step("leaving a consumer group", transport.leave(group)).await;
    }
}

/// One transport step of shutdown, bounded in time; a failure is logged, never fatal.
async fn step(what: &str, fut: impl Future<Output = Result<(), TransportError>>) {
    match tokio::time::timeout(TRANSPORT_STEP, fut).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "{what} at shutdown failed"),
        Err(_) => tracing::warn!("{what} at shutdown took more than {TRANSPORT_STEP:?}"),
    }
}

async fn close_transport(inner: &BusInner) {
    step("closing the transport", inner.transport().close()).await;
}

/// How long nothing may arrive, with every handler idle, before the drain counts as done:
/// messages sent before the unsubscribe may still be on their way from the connection.
const QUIET: Duration = Duration::from_millis(50);

/// Waits, up to the shutdown timeout, until every handler is idle (the calling run aside)
/// and nothing arrived for [`QUIET`]. Returns whether that happened.
async fn settle(inner: &BusInner, slots: &[Arc<Slot>], caller: Option<u64>) -> bool {
    let deadline = tokio::time::Instant::now() + inner.shutdown_timeout;
    let idle = || {
        slots
            .iter()
            .filter(|s| !s.pull)
            .all(|s| s.queue.len() == 0 && s.running() == u64::from(Some(s.id) == caller))
    };
    let received = || inner.stats.received.load(Ordering::Relaxed);
    let (mut seen, mut since) = (received(), tokio::time::Instant::now());
    loop {
        let now = tokio::time::Instant::now();
        if received() != seen {
            (seen, since) = (received(), now);
        } else if idle() && now.duration_since(since) >= QUIET {
            return true;
        }
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// With every queue closed and empty, the workers end at once; waits for that (not from
/// inside a run, which is itself one of them).
async fn workers_ended(inner: &BusInner, caller: Option<u64>) -> bool {
    let tracker = &inner.runtime.tracker;
    tracker.close();
    caller.is_some()
        || tokio::time::timeout(TRANSPORT_STEP, tracker.wait())
            .await
            .is_ok()
}

/// Completes on Ctrl-C, or on SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
