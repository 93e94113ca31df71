//! The behaviours of time: scheduled events arrive when due, and delayed retries come back to
//! their group only.

use std::time::{Duration, Instant};

use super::behaviours::{Excerpt, Note, Task, note};
use super::check::{Check, Context, Lab, Seen, ensure, wait_for};
use crate::EventBusBuilder;
use crate::bus::EventBus;
use crate::event::Event;
use crate::options::{HandlerOptions, RetryPolicy};

/// Scheduled events arrive once each, never before they are due; a cancelled one never.
pub(super) async fn scheduled_events_arrive_when_due(lab: &mut Lab<'_>) -> Check {
    const AHEAD: Duration = Duration::from_millis(300);
    let (notes, tasks) = (Seen::new(), Seen::new());
    let (n, t) = (notes.clone(), tasks.clone());
    let mut builder = EventBus::builder().handler(move |e: Note| {
        let n = n.clone();
        async move { n.push((e.n, Instant::now())) }
    });
    let probe = lab.connect(EventBus::builder()).await?;
    let durable = probe.capabilities().acks;
    if durable {
        let options = HandlerOptions::new().name("later");
        builder = builder
            .service("conf")
            .handler_with(options, move |e: Task| {
                let t = t.clone();
                async move {
                    if e.n >= 1000 {
                        t.push((e.n, Instant::now()));
                    }
                }
            });
    }
    lab.ready(builder).await?;
    let started = Instant::now();
    let cancelled = schedule(&probe, note(2), AHEAD).await?;
    schedule(&probe, note(1), AHEAD).await?;
    schedule(&probe, note(3), AHEAD * 2).await?;
    if durable {
        schedule(&probe, Task { n: 1000 }, AHEAD).await?;
        schedule(&probe, Task { n: 1001 }, AHEAD * 2).await?;
    }
    let id = cancelled.schedule_id();
    ensure!(
        probe.cancel_scheduled(id).await.context("cancelling")?,
        "cancelling a waiting event returned false"
    );
    let done = || notes.len() >= 2 && (!durable || tasks.len() >= 2);
    ensure!(
        wait_for(done).await,
        "scheduled events expected: notes 1 and 3, received {:?}; tasks 1000 and 1001, \
         received {:?}",
        notes.snapshot(),
        tasks.snapshot()
    );
    on_time(&notes.snapshot(), &[1, 3], started, AHEAD)?;
    if durable {
        on_time(&tasks.snapshot(), &[1000, 1001], started, AHEAD)?;
    }
    let again = probe
        .cancel_scheduled(id)
        .await
        .context("cancelling again")?;
    ensure!(!again, "cancelling a cancelled event returned true");
    Ok(())
}

async fn schedule<E: Event>(
    bus: &EventBus,
    event: E,
    ahead: Duration,
) -> Result<crate::ScheduleReceipt, super::check::Stop> {
    bus.publish_after(event, ahead).await.context("scheduling")
}

/// `got` holds `expected` in order, the first `ahead` after `started` or later, the second
/// twice that or later (a millisecond of clock granularity allowed).
fn on_time(got: &[(u64, Instant)], expected: &[u64], started: Instant, ahead: Duration) -> Check {
    let ids: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    ensure!(
        ids == expected,
        "expected {expected:?} once each, received {ids:?}"
    );
    for (i, (n, arrived)) in got.iter().enumerate() {
        let (at, due) = (arrived.duration_since(started), ahead * (i as u32 + 1));
        ensure!(
            at + Duration::from_millis(1) >= due,
            "event {n} arrived {at:?} after it was scheduled, before it was due ({due:?})"
        );
    }
    Ok(())
}

/// Delayed retries: each entry's first attempt fails, it comes back after 200 ms to its group
/// and is handled then; another group of the stream sees each entry once.
pub(super) async fn delayed_retries_come_back_to_their_group(lab: &mut Lab<'_>) -> Check {
    let (runs, others) = (Seen::new(), Seen::new());
    let bus = lab.connect(flaky(&runs)).await?;
    let o = others.clone();
    let other = EventBus::builder().service("conf").handler_with(
        HandlerOptions::new().name("other"),
        move |e: Task| {
            let o = o.clone();
            async move {
                if e.n >= 2000 {
                    o.push(e.n);
                }
            }
        },
    );
    lab.connect(other).await?;
    for n in 2000..2020 {
        bus.publish(Task { n }).await.context("publishing")?;
    }
    let done = || runs.len() >= 40 && others.len() >= 20;
    ensure!(
        wait_for(done).await,
        "20 entries expected to run twice each (once, then once more after a delayed retry), \
         ran {:?}; the other group received {:?}",
        runs.snapshot(),
        others.snapshot()
    );
    let mut got = runs.snapshot();
    got.sort_unstable();
    let expected: Vec<(u64, u32)> = (2000..2020).flat_map(|n| [(n, 0), (n, 1)]).collect();
    ensure!(
        got == expected,
        "each entry expected once as delivered and once back, got {got:?}"
    );
    let mut other = others.snapshot();
    other.sort_unstable();
    ensure!(
        other == (2000..2020).collect::<Vec<_>>(),
        "the other group expected each entry once, got {:?}",
        Excerpt(&other)
    );
    let deferred = bus.metrics().handler("flaky").map_or(0, |h| h.deferred);
    ensure!(
        deferred == 20,
        "20 hand-offs expected, the metrics count {deferred}"
    );
    Ok(())
}

/// A service whose `flaky` handler fails each task from 2000 on as delivered, and handles it
/// when a delayed retry of 200 ms brings it back; `runs` records (task, delayed retries).
fn flaky(runs: &Seen<(u64, u32)>) -> EventBusBuilder {
    let r = runs.clone();
    let retry = RetryPolicy::attempts(1).then_delayed([Duration::from_millis(200)]);
    let options = HandlerOptions::new().name("flaky").retry(retry);
    let handler = move |e: Task, info: crate::DeliveryInfo| {
        let r = r.clone();
        async move {
            if e.n < 2000 {
                return Ok(());
            }
            r.push((e.n, info.delayed));
            match info.delayed {
                0 => Err(std::io::Error::other("not yet")),
                _ => Ok(()),
            }
        }
    };
    EventBus::builder()
        .service("conf")
        .handler_with(options, handler)
}
