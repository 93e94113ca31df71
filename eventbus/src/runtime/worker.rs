//! A handler's worker: takes events from its queue and runs the handler on each, with a
//! timeout, panic catching and the retry policy.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::Runtime;
use super::dedupe::Dedupe;
use super::slot::Slot;
use crate::envelope::RawEnvelope;
use crate::error::{Failure, FailureCause, HandlerFailure};
use crate::handler::{Delivery, HandlerContext, delivery_info};
use crate::transport::Ack;

tokio::task_local! {
    /// The run this task is in: the runtime's address and the handler's id.
    static CURRENT_RUN: (usize, u64);
}

/// The handler id of the run the current task is in, when it is a run of `rt`'s handlers.
pub(crate) fn current_run(rt: &Arc<Runtime>) -> Option<u64> {
    let me = Arc::as_ptr(rt) as usize;
    CURRENT_RUN
        .try_with(|(rt, id)| (*rt == me).then_some(*id))
        .ok()
        .flatten()
}

/// Starts the worker that empties a handler's queue.
pub(crate) fn spawn_worker(rt: &Arc<Runtime>, slot: Arc<Slot>, ctx: HandlerContext) {
    let rt2 = rt.clone();
    rt.tracker.spawn(async move {
        let concurrency = slot.options.concurrency;
        let permits = Arc::new(Semaphore::new(concurrency));
        loop {
            // A free run slot first, then the event: an event is always either queued or
            // in flight, never held in between.
            let permit = if concurrency == 1 {
                None
            } else {
                tokio::select! {
                    biased;
                    _ = slot.cancel.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p { Ok(p) => Some(p), Err(_) => break },
                }
            };
            let next = tokio::select! {
                biased;
                _ = slot.cancel.cancelled() => None,
                item = slot.queue.pop() => item,
            };
            let Some(delivery) = next else { break };
            let here = (Arc::as_ptr(&rt2) as usize, slot.id);
            if concurrency == 1 {
                CURRENT_RUN.scope(here, run(&rt2, &slot, &ctx, delivery)).await;
            } else {
                let (rt3, slot2, ctx2) = (rt2.clone(), slot.clone(), ctx.clone());
                rt2.tracker.spawn(CURRENT_RUN.scope(here, async move {
                    run(&rt3, &slot2, &ctx2, delivery).await;
                    drop(permit);
                }));
            }
        }
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn handle_span(slot: &Slot, delivery: &Delivery) -> tracing::Span {
    let header = delivery.raw.as_deref().map(RawEnvelope::header);
    tracing::info_span!(
        "eventbus.handle",
        otel.name = %format_args!("process {}", delivery.message.channel),
        messaging.system = "redis",
        messaging.operation.type = "process",
        messaging.destination.name = %delivery.message.channel,
        messaging.message.id = delivery.event_id().unwrap_or(""),
        messaging.message.conversation_id = header.and_then(|h| h.correlation_id()),
        eventbus.traceparent = header
            .and_then(|h| h.traceparent())
            .filter(|t| crate::observe::is_valid_traceparent(t)),
        eventbus.handler = %slot.name,
        eventbus.event_type = %slot.event_type,
        eventbus.attempt = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// How a delivery's runs ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A run returned `Ok`.
    Handled,
    /// The last attempt failed: the event was counted as failed (and dead-lettered when so
    /// configured, always for a durable handler).
    GaveUp,
    /// Shutdown's deadline cancelled the run: the event is neither handled nor given up.
    Abandoned,
}

/// One event through one handler, with every attempt its retry policy allows.
async fn run(rt: &Runtime, slot: &Slot, ctx: &HandlerContext, delivery: Delivery) {
    slot.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    match delivery.message.ack.clone() {
        Some(ack) => run_durable(rt, slot, ctx, delivery, &ack).await,
        None => {
            run_attempts(rt, slot, ctx, delivery).await;
        }
    }
    slot.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// A durable entry: dead-lettered as poison past `max_deliveries`, skipped when the group
/// handled it already (with de-duplication), otherwise run; acknowledged unless abandoned.
async fn run_durable(
    rt: &Runtime,
    slot: &Slot,
    ctx: &HandlerContext,
    delivery: Delivery,
    ack: &Ack,
) {
    if ack.deliveries > 1 {
        slot.stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    if ack.claimed {
        slot.stats.claimed.fetch_add(1, Ordering::Relaxed);
    }
    if ack.deliveries > slot.options.durable.max_deliveries {
        return dead_letter_poison(rt, slot, &delivery, ack).await;
    }
    let dedupe = Dedupe::of(rt, slot, &delivery);
    if let Some(d) = &dedupe
        && d.seen().await
    {
        return acknowledge(rt, slot, ack);
    }
    let outcome = run_attempts(rt, slot, ctx, delivery).await;
    if outcome == Outcome::Handled
        && let Some(d) = &dedupe
    {
        d.record().await;
    }
    if outcome != Outcome::Abandoned {
        acknowledge(rt, slot, ack);
    }
}

/// An entry delivered more often than the handler's `max_deliveries`: stored as a dead letter
/// with its delivery count and acknowledged, without running the handler again.
async fn dead_letter_poison(rt: &Runtime, slot: &Slot, delivery: &Delivery, ack: &Ack) {
    slot.stats.failed.fetch_add(1, Ordering::Relaxed);
    let error = format!(
        "poison: delivered {} times, more than the handler's max_deliveries of {}",
        ack.deliveries, slot.options.durable.max_deliveries
    );
    super::dead_letter::store(rt, slot, delivery, ack.deliveries, error).await;
    acknowledge(rt, slot, ack);
}

/// Runs the handler with every attempt its retry policy allows.
async fn run_attempts(
    rt: &Runtime,
    slot: &Slot,
    ctx: &HandlerContext,
    mut delivery: Delivery,
) -> Outcome {
    let span = handle_span(slot, &delivery);
    async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::Span::current().record("eventbus.attempt", attempt);
            let started = Instant::now();
            let raw = delivery.raw.clone();
            let run_once = crate::observe::in_context(
                raw.as_ref(),
                attempt_once(slot, ctx, &mut delivery, attempt),
            );
            let outcome = tokio::select! {
                biased;
                // Shutdown's deadline passed: the run is abandoned, and counted there.
                _ = slot.cancel.cancelled() => return Outcome::Abandoned,
                outcome = run_once => outcome,
            };
            match outcome {
                Ok(()) => {
                    slot.stats.latency.record(started.elapsed());
                    slot.stats.handled.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Handled;
                }
                Err(cause) => {
                    if !failed(rt, slot, &delivery, attempt, cause).await {
                        return if slot.cancel.is_cancelled() {
                            Outcome::Abandoned
                        } else {
                            Outcome::GaveUp
                        };
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Acknowledges a finished at-least-once message in a task of its own, so the worker goes on
/// to the next one while the acknowledgement travels (acknowledgements of a busy handler are
/// pipelined, not one round trip each). Shutdown waits for these tasks before it closes the
/// transport. A failure leaves the entry pending, to be delivered again, and is reported.
fn acknowledge(rt: &Runtime, slot: &Slot, ack: &Ack) {
    let (hooks, handler, ack) = (rt.hooks.clone(), slot.name.clone(), ack.clone());
    rt.tracker.spawn(async move {
        if let Err(e) = ack.ack().await {
            hooks.report(Failure::Ack {
                handler,
                entry_id: ack.entry_id.to_string(),
                error: e.to_string(),
            });
        }
    });
}

/// Counts and reports a failed attempt, then waits out the retry delay. Returns whether to
/// try again; after the last attempt the event is counted as failed and dead-lettered.
async fn failed(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    attempt: u32,
    cause: FailureCause,
) -> bool {
    match &cause {
        FailureCause::Panic(_) => slot.stats.panicked.fetch_add(1, Ordering::Relaxed),
        FailureCause::Timeout(_) => slot.stats.timed_out.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    let will_retry =
        slot.options.retry.should_retry(attempt, &cause) && !slot.cancel.is_cancelled();
    tracing::Span::current().record("error.type", cause.kind_name());
    let last_error = cause.to_string();
    rt.hooks.report(Failure::Handler(HandlerFailure {
        handler: slot.name.clone(),
        event_type: slot.event_type.clone(),
        event_id: delivery.event_id().map(str::to_owned),
        channel: delivery.message.channel.clone(),
        attempt,
        will_retry,
        cause,
    }));
    if will_retry {
        slot.stats.retried.fetch_add(1, Ordering::Relaxed);
        let delay = slot.options.retry.delay(attempt);
        return tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            // Shutdown's deadline passed while waiting: abandoned, counted there.
            _ = slot.cancel.cancelled() => false,
        };
    }
    slot.stats.failed.fetch_add(1, Ordering::Relaxed);
    // A durable handler's failures always go to the dead-letter store: the entry is then
    // acknowledged, and must not be lost.
    if slot.options.dead_letters_on() || slot.group.is_some() {
        super::dead_letter::store(rt, slot, delivery, attempt, last_error).await;
    }
    false
}

async fn attempt_once(
    slot: &Slot,
    ctx: &HandlerContext,
    delivery: &mut Delivery,
    attempt: u32,
) -> Result<(), FailureCause> {
    let ack = delivery.message.ack.clone();
    let call = || delivery_info::scope(attempt, ack, || slot.handler.call(delivery, ctx));
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(call)) {
        Err(panic) => return Err(FailureCause::Panic(panic_message(&*panic))),
        Ok(Err(why)) => return Err(FailureCause::Extract(why)),
        Ok(Ok(fut)) => AssertUnwindSafe(fut).catch_unwind(),
    };
    let result = match slot.options.timeout {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => return Err(FailureCause::Timeout(limit)),
        },
        None => fut.await,
    };
    match result {
        Err(panic) => Err(FailureCause::Panic(panic_message(&*panic))),
        Ok(Err(e)) => Err(FailureCause::Error(Arc::from(e))),
        Ok(Ok(())) => Ok(()),
    }
}
