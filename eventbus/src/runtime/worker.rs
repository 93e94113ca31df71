//! A handler's worker: takes events from its queue and runs the handler on each, with a
//! timeout, panic catching and the retry policy.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::Semaphore;

use super::Runtime;
use super::dead_letter;
use super::dedupe::Dedupe;
use super::slot::Slot;
use crate::envelope::{DecodeError, RawEnvelope};
use crate::error::{DecodeFailure, Failure, FailureCause, HandlerFailure};
use crate::handler::{Delivery, HandlerContext, Verdict, delivery_info};
use crate::observe::{Process, Received};
use crate::transport::{Ack, Deferred};

#[cfg(feature = "postgres")]
use super::transaction::Ran;

/// How an attempt that did not fail ended (without a transaction, always handled).
#[cfg(not(feature = "postgres"))]
enum Ran {
    Handled,
    #[allow(dead_code)]
    Duplicate,
    #[allow(dead_code)]
    Unreachable(String),
}

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
            let next = next_delivery(&slot).await;
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

/// The next delivery from the queue, `None` once it is closed and empty or shutdown's deadline
/// passed. One that is waiting is taken without waiting on the cancellation as well: waiting
/// registers with the token, which cost a fifth of a no-op handler's run.
async fn next_delivery(slot: &Slot) -> Option<Delivery> {
    if slot.cancel.is_cancelled() {
        return None;
    }
    if let Some(item) = slot.queue.try_pop() {
        return Some(item);
    }
    tokio::select! {
        biased;
        _ = slot.cancel.cancelled() => None,
        item = slot.queue.pop() => item,
    }
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

/// The span of attempt `attempt` of `delivery` through `slot`'s handler.
fn attempt_span(slot: &Slot, delivery: &Delivery, attempt: u32) -> tracing::Span {
    let p = Process {
        channel: &delivery.message.channel,
        handler: &slot.name,
        event_type: &slot.event_type,
        attempt,
    };
    let received = || {
        let header = delivery.raw.as_deref().map(RawEnvelope::header);
        let ack = delivery.message.ack.as_ref();
        let r = Received {
            id: delivery.event_id().unwrap_or(""),
            correlation_id: header.and_then(|h| h.correlation_id()),
            traceparent: header
                .and_then(|h| h.traceparent())
                .filter(|t| crate::observe::is_valid_traceparent(t)),
            group: ack.map(|a| &*a.group),
            entry_id: ack.map(|a| &*a.entry_id),
        };
        (r, header)
    };
    crate::observe::process_span(&p, received, slot.options.own_trace)
}

/// How a delivery's runs ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A run returned `Ok`.
    Handled,
    /// The last attempt failed, with this error: the event was counted as failed, and goes to
    /// the dead letters when so configured (always for a durable handler).
    GaveUp { attempts: u32, error: String },
    /// Shutdown's deadline cancelled the run: the event is neither handled nor given up.
    Abandoned,
    /// The inbox says the handler's group handled the event already: it did not run.
    Duplicate,
    /// The immediate attempts failed and a delayed retry remains: the entry is handed off to
    /// come back later.
    Deferred { attempts: u32, error: String },
}

/// What follows a failed attempt.
enum Next {
    Retry,
    GiveUp(String),
    Defer(String),
    Abandon,
}

impl Next {
    /// How the delivery ended after `attempts` attempts, unless it is tried again.
    fn outcome(self, attempts: u32) -> Outcome {
        match self {
            Next::GiveUp(error) => Outcome::GaveUp { attempts, error },
            Next::Defer(error) => Outcome::Deferred { attempts, error },
            Next::Abandon | Next::Retry => Outcome::Abandoned,
        }
    }
}

/// One event through one handler, with every attempt its retry policy allows.
async fn run(rt: &Runtime, slot: &Slot, ctx: &HandlerContext, mut delivery: Delivery) {
    slot.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    match delivery.message.ack.clone() {
        Some(ack) => run_durable(rt, slot, ctx, delivery, &ack).await,
        None => {
            let outcome = run_attempts(rt, slot, ctx, &mut delivery).await;
            if let Outcome::GaveUp { attempts, error } = outcome
                && slot.options.dead_letters_on()
            {
                dead_letter::store_or_report(rt, slot, &delivery, attempts, error).await;
            }
        }
    }
    slot.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// A durable entry: skipped (another version) or dead-lettered at once (one that can never be
/// handled) as the router found it; dead-lettered as poison past `max_deliveries`; skipped when
/// the group handled it already (with de-duplication); otherwise run. It is acknowledged once
/// handled, skipped or stored as a dead letter; an entry whose dead letter could not be stored
/// stays pending, and so does one abandoned at shutdown.
async fn run_durable(
    rt: &Runtime,
    slot: &Slot,
    ctx: &HandlerContext,
    mut delivery: Delivery,
    ack: &Ack,
) {
    if ack.deliveries > 1 {
        slot.stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    if ack.claimed {
        slot.stats.claimed.fetch_add(1, Ordering::Relaxed);
    }
    match std::mem::take(&mut delivery.verdict) {
        Verdict::Run => {}
        Verdict::Skip => return acknowledge(rt, slot, ack),
        Verdict::Reject { error, size } => {
            return reject(rt, slot, &delivery, ack, &error, size).await;
        }
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
    match run_attempts(rt, slot, ctx, &mut delivery).await {
        Outcome::Handled => {
            if let Some(d) = &dedupe {
                d.record().await;
            }
            acknowledge(rt, slot, ack);
        }
        // Cut short by shutdown: it stays pending, for the next consumer.
        Outcome::GaveUp { .. } if slot.cancel.is_cancelled() => {}
        Outcome::GaveUp { attempts, error } => {
            let attempts = ack.prior_attempts.saturating_add(attempts);
            dead_letter_then_ack(rt, slot, &delivery, ack, attempts, error).await;
        }
        Outcome::Deferred { attempts, error } => {
            defer(rt, slot, &delivery, ack, attempts, error).await;
        }
        Outcome::Abandoned => {}
        Outcome::Duplicate => acknowledge(rt, slot, ack),
    }
}

/// An entry the router found can never be handled: reported as a decode failure, stored as a
/// dead letter with the reason at once, without a run, and acknowledged once stored.
async fn reject(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    ack: &Ack,
    error: &Arc<DecodeError>,
    size: usize,
) {
    rt.hooks.report(Failure::Decode(DecodeFailure {
        channel: delivery.message.channel.clone(),
        event_type: Some(slot.event_type.clone()),
        excerpt: delivery.message.excerpt(),
        len: size,
        error: error.clone(),
        entry_id: Some(ack.entry_id.to_string()),
    }));
    let mut reason = error.to_string();
    if size > delivery.message.payload.len() {
        reason.push_str(&format!(
            " (the dead letter keeps its first {} bytes; entry {} of `{}` holds them all \
             until it is trimmed)",
            delivery.message.payload.len(),
            ack.entry_id,
            delivery.message.channel
        ));
    }
    dead_letter_then_ack(rt, slot, delivery, ack, 0, reason).await;
}

/// An entry delivered more often than the handler's `max_deliveries`: reported, stored as a
/// dead letter with its delivery count and acknowledged, without running the handler again.
async fn dead_letter_poison(rt: &Runtime, slot: &Slot, delivery: &Delivery, ack: &Ack) {
    slot.stats.failed.fetch_add(1, Ordering::Relaxed);
    let max = slot.options.durable.max_deliveries;
    rt.hooks.report(Failure::Poison {
        handler: slot.name.clone(),
        entry_id: ack.entry_id.to_string(),
        event_id: delivery.event_id().map(str::to_owned),
        deliveries: ack.deliveries,
        max_deliveries: max,
    });
    let error = format!(
        "poison: delivered {} times, more than the handler's max_deliveries of {max}",
        ack.deliveries
    );
    dead_letter_then_ack(rt, slot, delivery, ack, ack.deliveries, error).await;
}

/// Hands a durable entry off for its next delayed retry (stored for later and acknowledged in
/// one step by the transport): the handler's slot is free at once. When the hand-off fails the
/// entry is let go, pending, to be delivered again, and the failure is reported.
async fn defer(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    ack: &Ack,
    attempts: u32,
    error: String,
) {
    let delay = slot
        .options
        .retry
        .delayed_retry(ack.delayed)
        .unwrap_or_default();
    let total = ack.prior_attempts.saturating_add(attempts);
    let payload = delivery.message.payload.clone();
    let later = Deferred::new(payload, delay, ack.delayed.saturating_add(1), total, error);
    match ack.defer(&later).await {
        Ok(()) => {
            slot.stats.deferred.fetch_add(1, Ordering::Relaxed);
        }
        Err(why) => {
            ack.release();
            rt.hooks.report(Failure::Ack {
                handler: slot.name.clone(),
                entry_id: ack.entry_id.to_string(),
                error: format!(
                    "handing the entry off for a delayed retry failed: {why} (it stays \
                     pending, and is delivered again)"
                ),
            });
        }
    }
}

/// Stores a durable entry's dead letter, then acknowledges the entry. When the store fails the
/// entry is not acknowledged: it is let go, pending, to be delivered again (and stored then),
/// and the store's error is reported.
async fn dead_letter_then_ack(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    ack: &Ack,
    attempts: u32,
    error: String,
) {
    match dead_letter::store(rt, slot, delivery, attempts, error).await {
        Ok(()) => acknowledge(rt, slot, ack),
        Err(why) => {
            ack.release();
            rt.hooks.report(Failure::DeadLetter {
                handler: slot.name.clone(),
                error: format!(
                    "{why} (entry {} stays pending, and is delivered again)",
                    ack.entry_id
                ),
            });
        }
    }
}

/// Runs the handler with every attempt its retry policy allows.
async fn run_attempts(
    rt: &Runtime,
    slot: &Slot,
    ctx: &HandlerContext,
    delivery: &mut Delivery,
) -> Outcome {
    let mut attempt = 0;
    let mut unreachable = 0;
    loop {
        attempt += 1;
        let span = attempt_span(slot, delivery, attempt);
        let started = Instant::now();
        let raw = delivery.raw.clone();
        let run_once =
            crate::observe::in_context(raw.as_ref(), attempt_in(rt, slot, ctx, delivery, attempt));
        // The run first: one that finishes at its first poll never waits on the cancellation.
        let outcome = tokio::select! {
            biased;
            outcome = crate::observe::within(&span, run_once) => outcome,
            // Shutdown's deadline passed: the run is abandoned, and counted there.
            _ = slot.cancel.cancelled() => return Outcome::Abandoned,
        };
        let cause = match outcome {
            Ok(Ran::Handled) => {
                slot.stats.latency.record(started.elapsed());
                slot.stats.handled.fetch_add(1, Ordering::Relaxed);
                return Outcome::Handled;
            }
            Ok(Ran::Duplicate) => return Outcome::Duplicate,
            Ok(Ran::Unreachable(error)) => {
                // Not the event's fault: no attempt is used up; the entry stays held.
                attempt -= 1;
                unreachable += 1;
                if database_pause(rt, slot, error, unreachable).await {
                    return Outcome::Abandoned;
                }
                continue;
            }
            Err(cause) => cause,
        };
        // The attempt's span ends here: the wait before the next attempt is not part of it.
        crate::observe::failed(&span, cause.kind_name(), &cause);
        drop(span);
        match failed(rt, slot, delivery, attempt, cause).await {
            Next::Retry => {}
            next => return next.outcome(attempt),
        }
    }
}

/// Reports that the handler's database could not be reached (the `n`th time in a row), then
/// waits before the run is made again: 100 ms, doubling up to 5 s. True when shutdown's
/// deadline cut the wait short.
async fn database_pause(rt: &Runtime, slot: &Slot, error: String, n: u32) -> bool {
    rt.hooks.report(Failure::Inbox {
        handler: slot.name.clone(),
        error,
    });
    let pause = Duration::from_millis(100)
        .saturating_mul(1 << n.min(6))
        .min(Duration::from_secs(5));
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = slot.cancel.cancelled() => true,
    }
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

/// Counts and reports a failed attempt, then waits out the retry delay. After the last
/// attempt the event is counted as failed, and given up with the error.
async fn failed(
    rt: &Runtime,
    slot: &Slot,
    delivery: &Delivery,
    attempt: u32,
    cause: FailureCause,
) -> Next {
    match &cause {
        FailureCause::Panic(_) => slot.stats.panicked.fetch_add(1, Ordering::Relaxed),
        FailureCause::Timeout(_) => slot.stats.timed_out.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    let retry = &slot.options.retry;
    let live = !slot.cancel.is_cancelled();
    let will_retry = retry.should_retry(attempt, &cause) && live;
    let later = !will_retry && live && delayed_retry_left(slot, delivery, &cause);
    let last_error = cause.to_string();
    rt.hooks.report(Failure::Handler(HandlerFailure {
        handler: slot.name.clone(),
        event_type: slot.event_type.clone(),
        event_id: delivery.event_id().map(str::to_owned),
        channel: delivery.message.channel.clone(),
        attempt,
        will_retry: will_retry || later,
        cause,
    }));
    if later {
        return Next::Defer(last_error);
    }
    if will_retry {
        slot.stats.retried.fetch_add(1, Ordering::Relaxed);
        let delay = slot.options.retry.delay(attempt);
        return tokio::select! {
            _ = tokio::time::sleep(delay) => Next::Retry,
            // Shutdown's deadline passed while waiting: abandoned, counted there.
            _ = slot.cancel.cancelled() => Next::Abandon,
        };
    }
    slot.stats.failed.fetch_add(1, Ordering::Relaxed);
    Next::GiveUp(last_error)
}

/// Whether a durable delivery has a delayed retry left that the retry policy's filter allows.
fn delayed_retry_left(slot: &Slot, delivery: &Delivery, cause: &FailureCause) -> bool {
    let retry = &slot.options.retry;
    let Some(ack) = &delivery.message.ack else {
        return false;
    };
    retry.delayed_retry(ack.delayed).is_some() && retry.retry_if.as_ref().is_none_or(|f| f(cause))
}

/// One attempt: in a database transaction for a handler that takes a `Tx`, else the plain run.
async fn attempt_in(
    rt: &Runtime,
    slot: &Slot,
    ctx: &HandlerContext,
    delivery: &mut Delivery,
    n: u32,
) -> Result<Ran, FailureCause> {
    #[cfg(feature = "postgres")]
    if slot.transactional {
        let id = delivery.event_id().map(str::to_owned);
        let run = attempt_once(slot, ctx, delivery, n);
        // Boxed: the transaction's future (sqlx's) is many times the size of a plain run's,
        // and every run's future is moved a few times on its way to being polled.
        return Box::pin(super::transaction::attempt(rt, slot, id.as_deref(), run)).await;
    }
    let _ = rt;
    attempt_once(slot, ctx, delivery, n)
        .await
        .map(|()| Ran::Handled)
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
    // A run that finishes at its first poll needs no timer: the deadline, and the clock read
    // it takes, is set only for a run that waits (counted from then).
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    let result = match (first, slot.options.timeout) {
        (Poll::Ready(r), _) => r,
        (Poll::Pending, Some(limit)) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => return Err(FailureCause::Timeout(limit)),
        },
        (Poll::Pending, None) => fut.await,
    };
    match result {
        Err(panic) => Err(FailureCause::Panic(panic_message(&*panic))),
        Ok(Err(e)) => Err(FailureCause::Error(Arc::from(e))),
        Ok(Ok(())) => Ok(()),
    }
}
