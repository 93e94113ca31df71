//! The in-process rows: `memory://` publish → N no-op handlers against the wire work alone
//! (one thread), a raw `tokio::sync::broadcast` channel with N receivers, and the wire work
//! handed to N tasks over channels (an experiment: the cost of the hand-off alone), in
//! interleaved rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventbus::{Envelope, EventBus, HandlerOptions, RawEnvelope};
use tokio::sync::broadcast;

use crate::BenchEvent;
use crate::table::{Row, Spread, pct, rate_text, row};

/// Handlers (and receivers) per event.
const HANDLERS: usize = 4;

/// Waits until `count` reaches `target`, up to a minute.
async fn reach(count: &AtomicU64, target: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Acquire) < target {
        if Instant::now() > deadline {
            bail!("{} of {target} handled", count.load(Ordering::Acquire));
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Events per second through a broadcast channel to `HANDLERS` receiving tasks.
async fn broadcast_baseline(n: u64) -> anyhow::Result<f64> {
    let (tx, _) = broadcast::channel::<Arc<BenchEvent>>(8192);
    let count = Arc::new(AtomicU64::new(0));
    for _ in 0..HANDLERS {
        let (mut rx, count) = (tx.subscribe(), count.clone());
        tokio::spawn(async move {
            while let Ok(event) = rx.recv().await {
                std::hint::black_box(&event);
                count.fetch_add(1, Ordering::Release);
            }
        });
    }
    let started = Instant::now();
    for seq in 0..n {
        // Wait for room as a bounded queue would, instead of letting receivers lag.
        while tx.len() >= 4096 {
            tokio::task::yield_now().await;
        }
        tx.send(Arc::new(BenchEvent::new(seq)))?;
    }
    reach(&count, n * HANDLERS as u64).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Events per second through the wire work alone, on one thread with no bus: a new envelope
/// encoded, parsed once and its data decoded once per handler, as the bus does for every event
/// on `memory://` as on Redis. No bus that keeps the wire contract in process can pass this.
pub(crate) fn wire_floor(n: u64) -> anyhow::Result<f64> {
    let mut buf = Vec::with_capacity(512);
    let started = Instant::now();
    for seq in 0..n {
        buf.clear();
        Envelope::new(BenchEvent::new(seq)).encode_into(&mut buf)?;
        let raw = RawEnvelope::parse(&buf)?;
        for _ in 0..HANDLERS {
            std::hint::black_box(raw.decode_data::<BenchEvent>()?);
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Events per second through a `memory://` bus with `HANDLERS` no-op handlers.
pub(crate) async fn bus_rate(n: u64) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let each: Vec<Arc<AtomicU64>> = (0..HANDLERS).map(|_| Arc::default()).collect();
    let slowest = || {
        each.iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    };
    let mut builder = EventBus::builder();
    for (i, mine) in each.iter().enumerate() {
        let (count, mine) = (count.clone(), mine.clone());
        builder = builder.handler_with(
            HandlerOptions::new().name(format!("noop-{i}")),
            move |e: BenchEvent| {
                let (count, mine) = (count.clone(), mine.clone());
                async move {
                    std::hint::black_box(&e);
                    mine.fetch_add(1, Ordering::Release);
                    count.fetch_add(1, Ordering::Release);
                }
            },
        );
    }
    let bus = builder.connect("memory://").await?;
    let started = Instant::now();
    for seq in 0..n {
        // Keep within the default queues: the handlers' pace, not drops, is measured.
        while seq.saturating_sub(slowest()) > 4096 {
            tokio::task::yield_now().await;
        }
        bus.publish(BenchEvent::new(seq)).await?;
    }
    reach(&count, n * HANDLERS as u64).await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let dropped: u64 = bus.metrics().handlers.iter().map(|h| h.dropped).sum();
    let _ = bus.shutdown().await;
    if dropped > 0 {
        bail!("{dropped} events dropped");
    }
    Ok(rate)
}

/// Events per second through the wire work handed off as the bus hands it: each event encoded
/// and parsed on the publishing task, then sent to `HANDLERS` tasks over tokio `mpsc` channels
/// (bounded as the bus's queues are), each decoding its own copy. No routing, no metrics, no
/// spans, no bus: what the wire work costs once it crosses tasks, the floor of a bus that runs
/// each handler in a task of its own.
async fn handoff_floor(n: u64) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..HANDLERS {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<RawEnvelope>>(4096);
        let count = count.clone();
        tokio::spawn(async move {
            while let Some(raw) = rx.recv().await {
                std::hint::black_box(raw.decode_data::<BenchEvent>().is_ok());
                count.fetch_add(1, Ordering::Release);
            }
        });
        senders.push(tx);
    }
    let mut buf = Vec::with_capacity(512);
    let started = Instant::now();
    for seq in 0..n {
        buf.clear();
        Envelope::new(BenchEvent::new(seq)).encode_into(&mut buf)?;
        let raw = Arc::new(RawEnvelope::parse(&buf)?);
        for tx in &senders {
            tx.send(raw.clone()).await?;
        }
    }
    reach(&count, n * HANDLERS as u64).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Rounds of each measure, interleaved (floor, ours, broadcast; again): a baseline taken once
/// moves by 2x on a shared machine, so each is reported as the median of its rounds with its
/// spread, and the ratios are of medians.
const ROUNDS: usize = 5;

/// The in-process rows.
pub(crate) async fn rows(n: u64) -> anyhow::Result<Vec<Row>> {
    let (mut floors, mut ours, mut baselines) = (Vec::new(), Vec::new(), Vec::new());
    let mut handoffs = Vec::new();
    for round in 1..=ROUNDS {
        crate::progress::stage(format!(
            "memory:// round {round}/{ROUNDS}: the wire work alone, ours, tokio broadcast, the \
             wire work handed to tasks"
        ));
        floors.push(wire_floor(n)?);
        ours.push(bus_rate(n).await?);
        baselines.push(broadcast_baseline(n).await?);
        handoffs.push(handoff_floor(n).await?);
    }
    let handoff = Spread::of(&handoffs);
    let (floor_s, ours_s, baseline_s) = (
        Spread::of(&floors),
        Spread::of(&ours),
        Spread::of(&baselines),
    );
    let (floor, ours_m, baseline) = (floor_s.median, ours_s.median, baseline_s.median);
    let per_round: Vec<String> = ours.iter().zip(&floors).map(|(o, f)| pct(o / f)).collect();
    Ok(vec![
        row(
            format!("memory:// publish → {HANDLERS} handlers ({ROUNDS} rounds)"),
            format!(
                "wire work alone (encode, parse, {HANDLERS} decodes; one thread, no bus): {}",
                floor_s.text()
            ),
            ours_s.text(),
        )
        .ratio(format!(
            "{} (rounds {})",
            pct(ours_m / floor),
            per_round.join(", ")
        ))
        .target("≥ 60% of the wire work", ours_m >= 0.6 * floor),
        row(
            "  memory:// against tokio broadcast",
            format!(
                "E tokio broadcast, {HANDLERS} receivers: {}",
                baseline_s.text()
            ),
            rate_text(ours_m),
        )
        .ratio(pct(ours_m / baseline)),
        row(
            format!("  the wire work handed to {HANDLERS} tasks (mpsc, no bus)"),
            format!("wire work alone: {}", rate_text(floor)),
            handoff.text(),
        )
        .ratio(format!(
            "{} (ours: {} of it)",
            pct(handoff.median / floor),
            pct(ours_m / handoff.median)
        )),
    ])
}
