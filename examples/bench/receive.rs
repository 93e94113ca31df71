//! The receive-side rows (`--receive-rows`, also part of the full run): the subscriber's CPU
//! per event and its latency under a steady load, against raw redis-rs in the same rounds.
//!
//! - CPU: redis-benchmark `-P 16` publishes one envelope `n` times to (1) a raw redis-rs
//!   subscriber that counts the messages, (2) the same subscriber also doing the wire work
//!   the contract asks of any subscriber (parse the envelope, decode the event): the floor of
//!   a bus, and (3) the subscriber bus with a no-op handler. CPU is this process's.
//! - Latency: `rate` events a second for `secs` seconds from a publisher process to the bus,
//!   and from a raw publisher process to a raw subscriber (R), p99 and p99.9 of each.
//!
//! Each measure is taken in [`ROUNDS`] interleaved rounds; cells are medians with the spread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventbus::RawEnvelope;
use eventbus_suite::redis_server::RedisServer;

use crate::table::{Row, quantile, row, times};
use crate::{
    BenchEvent, CHANNEL, Drain, cpu_and_rss, e2e, progress, publish_command, redis_benchmark,
    steady, subscriber_capacity, wait_count,
};

/// Rounds of each measure.
const ROUNDS: usize = 3;

/// Median, lowest and highest of `v`.
fn spread(v: &[f64]) -> [f64; 3] {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    [
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    ]
}

/// `1.52 µs (1.40-1.61)`: a median and spread of microseconds.
fn us_text(v: &[f64]) -> String {
    let [m, lo, hi] = spread(v);
    format!("{m:.2} µs ({lo:.2}-{hi:.2})")
}

/// One envelope as the bus publishes it, as text.
fn envelope() -> anyhow::Result<String> {
    let bytes = eventbus::Envelope::new(BenchEvent::new(0))
        .with_source("bench-publisher")
        .encode()?;
    Ok(String::from_utf8(bytes)?)
}

/// CPU per message (µs) of a raw redis-rs subscriber fed `n` copies of `envelope` by
/// redis-benchmark; with `wire`, each message's envelope is parsed and its event decoded.
async fn raw_cpu(server: &RedisServer, n: u64, envelope: &str, wire: bool) -> anyhow::Result<f64> {
    let drain = Drain::start_with(&server.url(), move |msg| {
        if wire {
            let raw = RawEnvelope::parse(msg.get_payload_bytes());
            let event = raw.and_then(|raw| raw.decode_data::<BenchEvent>());
            std::hint::black_box(event.is_ok());
        }
    })
    .await?;
    let (count, task) = (drain.count, drain.task);
    let (cpu0, _) = cpu_and_rss();
    redis_benchmark(server.port(), &["-P", "16"], n, &publish_command(envelope)).await?;
    let got = wait_count(&count, n, Duration::from_secs(3)).await;
    let (cpu1, _) = cpu_and_rss();
    task.abort();
    Ok(cpu1.saturating_sub(cpu0).as_secs_f64() * 1e6 / got.max(1) as f64)
}

/// The number in the header at the start of `buf` (`$N\r\n`, `:N\r\n`) and the header's length.
fn bulk_header(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.iter().position(|b| *b == b'\r')?;
    let n = std::str::from_utf8(buf.get(1..end)?).ok()?.parse().ok()?;
    Some((n, end + 2))
}

/// The length of the whole push at the start of `buf` (`*K` and K bulk strings) and where its
/// last bulk string's data starts and ends, once it has all arrived.
fn push_len(buf: &[u8]) -> Option<(usize, usize, usize)> {
    let end = buf.iter().position(|b| *b == b'\r')?;
    let k: usize = std::str::from_utf8(buf.get(1..end)?).ok()?.parse().ok()?;
    let mut at = end + 2;
    let mut last = (at, at);
    for _ in 0..k {
        let (n, head) = bulk_header(buf.get(at..)?)?;
        if buf[at] == b':' {
            // An integer (the subscription count of a confirmation).
            at += head;
            continue;
        }
        last = (at + head, at + head + n);
        at += head + n + 2;
    }
    (buf.len() >= at).then_some((at, last.0, last.1))
}

/// CPU per message (µs) of a subscriber written by hand (a tokio `TcpStream`, RESP read by
/// hand, each payload a slice of the read buffer), fed as [`raw_cpu`] feeds redis-rs: what the
/// reading costs without redis-rs's pub/sub connection. An experiment: no reconnects, no TLS.
async fn hand_cpu(server: &RedisServer, n: u64, envelope: &str) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port())).await?;
    let sub = format!(
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{CHANNEL}\r\n",
        CHANNEL.len()
    );
    stream.write_all(sub.as_bytes()).await?;
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
        loop {
            while let Some((len, from, to)) = push_len(&buf) {
                let push = buf.split_to(len).freeze();
                std::hint::black_box(push.slice(from..to));
                c.fetch_add(1, Ordering::Release);
            }
            buf.reserve(16 * 1024);
            if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        }
    });
    // The subscription's confirmation is the first push.
    wait_count(&count, 1, Duration::from_secs(3)).await;
    let (cpu0, _) = cpu_and_rss();
    redis_benchmark(server.port(), &["-P", "16"], n, &publish_command(envelope)).await?;
    let got = wait_count(&count, n + 1, Duration::from_secs(3)).await - 1;
    let (cpu1, _) = cpu_and_rss();
    task.abort();
    Ok(cpu1.saturating_sub(cpu0).as_secs_f64() * 1e6 / got.max(1) as f64)
}

/// What the rounds measured.
#[derive(Default)]
struct Measured {
    raw: Vec<f64>,
    floor: Vec<f64>,
    hand: Vec<f64>,
    ours: Vec<f64>,
    /// p99 and p99.9 (ns) of ours and of R, per round.
    ours_tail: Vec<[f64; 2]>,
    raw_tail: Vec<[f64; 2]>,
}

/// p99 and p99.9 of sorted latencies.
fn tail(v: &[u64]) -> [f64; 2] {
    [quantile(v, 0.99), quantile(v, 0.999)]
}

/// The receive-side rows on `server`: CPU with `n` messages a round, latency at `rate` a
/// second for `secs` seconds.
pub(crate) async fn rows(
    server: &RedisServer,
    n: u64,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Vec<Row>> {
    let envelope = envelope()?;
    let mut m = Measured::default();
    for r in 1..=ROUNDS {
        progress::stage(format!(
            "receive round {r}/{ROUNDS}: raw subscriber, raw + wire work, ours; {rate}/s for \
             {secs} s, ours and R"
        ));
        m.raw.push(raw_cpu(server, n, &envelope, false).await?);
        m.floor.push(raw_cpu(server, n, &envelope, true).await?);
        m.hand.push(hand_cpu(server, n, &envelope).await?);
        let (_, _, _, cpu) = subscriber_capacity(server, n).await?;
        m.ours.push(cpu.as_secs_f64() * 1e6);
        let run = e2e(&server.url(), rate * secs, Some(rate), false, true).await?;
        m.ours_tail.push(tail(&run.latencies));
        let raw = steady::raw_steady(server, rate, rate * secs).await?;
        m.raw_tail.push(tail(&raw));
    }
    Ok(table(&m, rate))
}

fn table(m: &Measured, rate: u64) -> Vec<Row> {
    let [raw, floor, ours] = [&m.raw, &m.floor, &m.ours].map(|v| spread(v)[0]);
    let nth = |v: &[[f64; 2]], i: usize| v.iter().map(|t| t[i]).collect::<Vec<_>>();
    let [o99, o999, r99, r999] = [
        nth(&m.ours_tail, 0),
        nth(&m.ours_tail, 1),
        nth(&m.raw_tail, 0),
        nth(&m.raw_tail, 1),
    ]
    .map(|v| spread(&v)[0] / 1000.0);
    let tails = |a: f64, b: f64| format!("{a:.0} µs / {b:.0} µs");
    vec![
        row(
            format!("subscriber CPU per event ({ROUNDS} rounds)"),
            format!(
                "raw redis-rs subscriber, same envelope: {}",
                us_text(&m.raw)
            ),
            us_text(&m.ours),
        )
        .ratio(times(ours / raw))
        .target("≤ 1.8× raw", ours <= 1.8 * raw),
        row(
            "  raw subscriber + the wire work (parse, decode)",
            format!("raw: {raw:.2} µs"),
            us_text(&m.floor),
        )
        .ratio(format!(
            "{} (ours: {} of it)",
            times(floor / raw),
            times(ours / floor)
        )),
        row(
            "  subscriber written by hand (RESP read in place)",
            format!("raw: {raw:.2} µs"),
            us_text(&m.hand),
        )
        .ratio(times(spread(&m.hand)[0] / raw)),
        row(
            format!("latency p99 / p99.9 at {rate}/s ({ROUNDS} rounds)"),
            format!("R raw redis-rs pair: {}", tails(r99, r999)),
            tails(o99, o999),
        )
        .ratio(format!("{} / {}", times(o99 / r99), times(o999 / r999)))
        .target("≤ 1.5× R", o99 <= 1.5 * r99 && o999 <= 1.5 * r999),
    ]
}
