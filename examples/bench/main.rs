//! Benchmark harness: eventbus over Redis pub/sub against redis-benchmark and a raw redis-rs
//! client, on a throwaway redis-server (and a local Redis Cluster) on loopback. Prints one table.
//!
//! ```text
//! cargo run --release --example bench              # full run, under ~3 minutes on 2 cores
//! cargo run --release --example bench -- --quick   # small N: a smoke test
//! cargo run --release --example bench -- --queue-capacity 65536   # the no-op handler's queue
//! cargo run --release --example bench -- --profile subscribe      # one side, for `perf record`
//! cargo run --release --example bench -- --publish-rows   # the publish path's rows, on one line
//! cargo run --release --example bench -- --outbox-rows    # the outbox and inbox rows only
//! cargo run --release --example bench -- --schedule-rows  # the scheduling rows only
//! cargo run --release --example bench --features tls -- --tls-rows   # rediss:// rows, 3 rounds
//! cargo run --release --example bench -- --memory-rows    # memory:// against the wire work, 5 rounds
//! ```
//!
//! What it measures, all with one subscriber attached to the channel:
//!
//! - baseline A: `redis-benchmark -c 1 -P 16 -n N PUBLISH events:bench <200 bytes>`, taken
//!   before, between and after ours; the ratios to A are to the median of the three;
//! - baseline B: a raw redis-rs multiplexed connection with 16 `PUBLISH`es of the same payload
//!   in flight;
//! - baseline C: `redis-benchmark -c 1 -n N PUBLISH ...`, one at a time: its p50 latency;
//! - baseline F: on a local Redis Cluster (three primaries, three replicas),
//!   `redis-benchmark -c 1 -P 16 -n N SPUBLISH events:bench <200 bytes>` on the primary that
//!   owns the channel's slot, with a raw sharded subscriber attached (`cluster.rs`);
//! - baseline R: at each steady rate, a raw redis-rs publisher process paced as ours and a raw
//!   redis-rs subscriber here (`steady.rs`): the latency the machine gives without the bus;
//! - ours: `bus.publish` with 16 in flight (an envelope around a ~200-byte event); end to end
//!   from a publisher in another process (this binary run with `--publisher`) through Redis to
//!   a subscriber bus with a no-op handler (nothing may be lost, and the server must not
//!   disconnect the subscriber); latency from publish to handler (a timestamp in the event),
//!   one event in flight and under a steady load; the subscriber's CPU time and RSS; and what
//!   a stalled handler costs a no-op handler beside it; on the cluster, `bus.publish` with 16
//!   in flight and end to end, against F (no targets: every node, the publisher and the
//!   subscriber share the same cores, so the ratio is overhead, not scaling);
//! - to tell the two sides apart: B' (B with our envelope's bytes as the payload), B'' (B
//!   building and encoding a fresh envelope for each publish: the wire format's cost), the CPU time
//!   per publish of B and of ours, and the subscriber bus fed by redis-benchmark `-P 16`
//!   publishing the envelope (the subscriber's capacity when the publisher is not the limit);
//! - as an experiment, G: B'' on a publisher connection written by hand (`resp.rs`), to measure
//!   what redis-rs's multiplexed connection costs; and on `memory://`, the wire work alone
//!   (encode, parse, a decode per handler) against broadcast.
//!
//! The targets next to the ratios are the performance issue's: publish ≥ 75% of A and ≥ 100%
//! of B, publishing CPU per event ≤ 1.1× B's; `publish_all` ≥ 100% of A; delivered ≥ 60% of A
//! with nothing lost, the subscriber alone ≥ 80% of A with nothing lost and ≤ 1.5× the raw
//! subscriber's CPU per event; latency one in flight p50 ≤ 2× and p99 ≤ 3× C's p50, at a steady
//! 5000/s p99 ≤ 5× C's p50 and p99.9 ≤ 1 ms (and p99.9 ≤ 1 ms at 1000/s and 20000/s);
//! `memory://` ≥ 50% of broadcast; a stalled handler costs the others < 10%.
//!
//! On a throwaway PostgreSQL (`outbox.rs`): the outbox row's cost in a transaction of 1 and of
//! 100 against the same transaction without it (baseline P; at most +30% for one), the relay
//! against `publish_all` (baseline Q; at least 50%), publish-to-handler latency through the
//! outbox at 1 000/s (p99 under 20 ms), and an inbox handler against the same write without
//! the inbox (baseline H).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod cluster;
mod durable;
mod memory;
mod outbox;
mod progress;
mod receive;
mod resp;
mod schedule;
mod single;
mod steady;
mod table;
#[cfg(feature = "tls")]
mod tls;

use anyhow::{Context, bail};
use eventbus::{Event, EventBus, HandlerOptions, State};
use eventbus_suite::redis_server::RedisServer;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use table::{Row, print_table, rate_text};

/// The channel the baselines publish on; also the event's channel.
const CHANNEL: &str = "events:bench";
/// The raw payload size of the baselines, and the size of the event's data.
const PAYLOAD: usize = 200;
/// Publishes in flight for the throughput runs.
const IN_FLIGHT: usize = 16;

/// The benchmark event: a sequence number, the publisher's clock, padding to ~200 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench")]
struct BenchEvent {
    seq: u64,
    sent_ns: u64,
    pad: String,
}

impl BenchEvent {
    fn new(seq: u64) -> Self {
        BenchEvent {
            seq,
            sent_ns: now_ns(),
            // `{"seq":NNNNNN,"sent_ns":NNNNNNNNNNNNNNNNNNN,"pad":"…"}` is 53 bytes and the pad.
            pad: "x".repeat(PAYLOAD - 53),
        }
    }
}

/// Wall-clock nanoseconds: comparable across processes on one machine.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    publish: u64,
    e2e: u64,
    one_at_a_time: u64,
    latency_samples: u64,
    load_rate: u64,
    load_secs: u64,
    /// The other steady loads: (events a second, seconds).
    steady: [(u64, u64); 2],
    stalled: u64,
    capacity: u64,
    durable: u64,
    durable_latency: u64,
    /// Events in each cluster row.
    cluster: u64,
    /// The outbox and inbox rows.
    outbox: outbox::OutboxSizes,
    /// `--publish-rows`: stop after the rows of the publish path and print them on one line.
    publish_rows: bool,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                publish: 10_000,
                e2e: 10_000,
                one_at_a_time: 5_000,
                latency_samples: 1_000,
                load_rate: 2_000,
                load_secs: 1,
                steady: [(1_000, 1), (20_000, 1)],
                stalled: 10_000,
                capacity: 10_000,
                durable: 5_000,
                durable_latency: 500,
                cluster: 5_000,
                outbox: outbox::OutboxSizes {
                    transactions: 500,
                    relay: 5_000,
                    steady_secs: 1,
                    inbox: 2_000,
                },
                publish_rows: false,
            }
        } else {
            Sizes {
                publish: 500_000,
                e2e: 500_000,
                one_at_a_time: 100_000,
                latency_samples: 30_000,
                load_rate: 5_000,
                load_secs: 8,
                // Enough samples that p99.9 rests on ten or more of them.
                steady: [(1_000, 10), (20_000, 2)],
                stalled: 300_000,
                // At most ~25 MB of envelopes: under the 32 MB hard output-buffer limit even if
                // the subscriber fell far behind.
                capacity: 50_000,
                durable: 100_000,
                durable_latency: 5_000,
                cluster: 200_000,
                outbox: outbox::OutboxSizes {
                    transactions: 5_000,
                    relay: 50_000,
                    steady_secs: 5,
                    inbox: 20_000,
                },
                publish_rows: false,
            }
        }
    }

    /// `--publish-rows`: the publish path's rows only (A, B, B'', G, ours, `publish_all`, CPU
    /// per event, end to end, one in flight, 5000/s), in about 40 s, to run several times.
    fn publish_rows() -> Self {
        Sizes {
            publish: 300_000,
            e2e: 200_000,
            latency_samples: 10_000,
            load_secs: 5,
            publish_rows: true,
            ..Sizes::new(false)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: bench [--quick] [--queue-capacity N] [--publish-rows | --outbox-rows | --schedule-rows | --memory-rows | --tls-rows | --cluster-rows | --receive-rows]\n       \
             bench --profile publish|subscribe|consume|memory|wire [--count N]"
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Everything runs on the runtime's workers, as a service's tasks do: a future driven by
    // `block_on` lives on the main thread, and every publish from there would cross threads
    // to reach the connection's task and back.
    let _ = QUEUE_CAPACITY.set(arg(&args, "--queue-capacity"));
    rt.block_on(async move {
        tokio::spawn(async move {
            if args.iter().any(|a| a == "--raw-publisher") {
                return steady::raw_publisher_main(&args).await;
            }
            if args.iter().any(|a| a == "--publisher") {
                return publisher_main(&args).await;
            }
            if let Some(what) = arg::<String>(&args, "--profile") {
                return profile(&what, arg(&args, "--count").unwrap_or(1_000_000)).await;
            }
            let quick = args.iter().any(|a| a == "--quick");
            if args.iter().any(|a| a == "--publish-rows") {
                return run(Sizes::publish_rows(), false).await;
            }
            if let Some(alone) = rows_alone(&args, quick).await {
                return alone;
            }
            run(Sizes::new(quick), quick).await
        })
        .await?
    })
}

/// The `--*-rows` runs that measure some rows alone and print them, when `args` asks for one.
async fn rows_alone(args: &[String], quick: bool) -> Option<anyhow::Result<()>> {
    let asked = |flag: &str| args.iter().any(|a| a == flag);
    let sizes = Sizes::new(quick);
    let n = sizes.durable;
    let rows = if asked("--outbox-rows") {
        return Some(outbox_only(quick).await);
    } else if asked("--schedule-rows") {
        return Some(schedule_only(quick).await);
    } else if cfg!(feature = "tls") && asked("--tls-rows") {
        #[cfg(feature = "tls")]
        let rows = tls::rows(n).await.map(|r| ("TLS", r));
        #[cfg(not(feature = "tls"))]
        let rows = Ok(("TLS", Vec::new()));
        rows
    } else if asked("--memory-rows") {
        memory::rows(n).await.map(|r| ("memory://", r))
    } else if asked("--receive-rows") {
        let server = RedisServer::start();
        let rows = receive::rows(&server, n, sizes.load_rate, sizes.load_secs).await;
        rows.map(|r| ("receive-side", r))
    } else if asked("--cluster-rows") {
        let rows = cluster::rows(sizes.cluster).await;
        rows.map(|r| ("cluster", r))
    } else {
        return None;
    };
    Some(rows.and_then(|(what, rows)| {
        print_rows(what, rows)?;
        if what == "cluster" {
            println!("{}", cluster::note());
        }
        Ok(())
    }))
}

/// Prints rows measured alone, with the machine they ran on.
fn print_rows(what: &str, rows: Vec<Row>) -> anyhow::Result<()> {
    progress::finish();
    println!("eventbus {what} rows on {}", machine());
    print_table(&rows);
    Ok(())
}

/// `--schedule-rows`: the scheduling rows alone, on a redis-server of their own.
async fn schedule_only(quick: bool) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let sizes = Sizes::new(quick);
    let rows = schedule::rows(&server, sizes.durable, sizes.outbox.steady_secs).await?;
    progress::finish();
    println!("eventbus scheduling rows on {}", machine());
    print_table(&rows);
    Ok(())
}

/// `--outbox-rows`: the outbox and inbox rows alone, on a redis-server of their own.
async fn outbox_only(quick: bool) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let rows = outbox::rows(&server, &Sizes::new(quick).outbox).await?;
    progress::finish();
    println!("eventbus outbox and inbox rows on {}", machine());
    print_table(&rows);
    Ok(())
}

/// `--profile publish|subscribe|consume|memory|wire [--count N]`: one side only, for a profiler
/// attached to this process (`perf record -g -- bench --profile subscribe`). `publish` publishes N
/// events, 16 in flight; `subscribe` handles N events sent by a publisher process; `consume`
/// reads and acknowledges N durable entries appended beforehand; `memory` publishes N events
/// on `memory://` to four no-op handlers; `wire` does the wire work alone for N events
/// (encode, parse, four decodes), the floor of the `memory` row.
async fn profile(what: &str, n: u64) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let started = Instant::now();
    match what {
        "publish" => {
            let drain = Drain::start(&server.url()).await?;
            let bus = EventBus::builder().connect(&server.url()).await?;
            let rate = bus_publish(&bus, n).await?;
            println!("published {n} events: {}", rate_text(rate));
            drain.task.abort();
        }
        "subscribe" => {
            let run = e2e(&server.url(), n, None, false, false).await?;
            println!(
                "delivered {} of {}: {}, {:.2} µs CPU per event",
                run.delivered,
                run.published,
                rate_text(run.rate),
                run.cpu_per_event.as_secs_f64() * 1e6
            );
        }
        "consume" => {
            let rate = durable::profile_consume(&server, n).await?;
            println!(
                "consumed and acknowledged {n} durable entries: {}",
                rate_text(rate)
            );
        }
        "memory" => {
            let rate = memory::bus_rate(n).await?;
            println!(
                "memory:// published {n} events to 4 handlers: {}",
                rate_text(rate)
            );
        }
        "wire" => {
            let rate = memory::wire_floor(n)?;
            println!("the wire work alone for {n} events: {}", rate_text(rate));
        }
        other => {
            bail!(
                "--profile takes `publish`, `subscribe`, `consume`, `memory` or `wire`, not `{other}`"
            )
        }
    }
    eprintln!("{:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The publisher process.

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// `--publisher --url URL --count N [--inflight K] [--rate R]`: publishes N events, K in
/// flight, or R per second when a rate is given; prints `done PUBLISHED ERRORS SECONDS`.
async fn publisher_main(args: &[String]) -> anyhow::Result<()> {
    let url: String = arg(args, "--url").context("--url")?;
    let count: u64 = arg(args, "--count").context("--count")?;
    let in_flight: usize = arg(args, "--inflight").unwrap_or(IN_FLIGHT);
    let rate: Option<u64> = arg(args, "--rate");
    let bus = EventBus::builder()
        .service("bench-publisher")
        .connect(&url)
        .await?;
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    match rate {
        None => {
            let errs = errors.clone();
            futures_util::stream::iter(0..count)
                .map(|seq| bus.publish(BenchEvent::new(seq)))
                .buffer_unordered(in_flight)
                .for_each(|r| {
                    if r.is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                    async {}
                })
                .await;
        }
        Some(rate) => {
            // One event every 1/rate s, each published on a task of its own so that a slow
            // answer does not delay the next.
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let mut tasks = tokio::task::JoinSet::new();
            for seq in 0..count {
                let due = started + interval.mul_f64(seq as f64);
                tokio::time::sleep_until(due.into()).await;
                let (bus, errs) = (bus.clone(), errors.clone());
                tasks.spawn(async move {
                    if bus.publish(BenchEvent::new(seq)).await.is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    println!("done {} {errors} {secs}", count - errors);
    std::io::stdout().flush()?;
    let _ = bus.shutdown().await;
    Ok(())
}

/// A publisher process started with `args`; returns (published, errors).
async fn run_publisher(url: &str, args: &[String]) -> anyhow::Result<(u64, u64)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--publisher")
        .arg("--url")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().context("publisher stdout")?;
        let mut result = None;
        for line in BufReader::new(out).lines() {
            let line = line?;
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.first() == Some(&"done") && parts.len() >= 3 {
                result = Some((parts[1].parse()?, parts[2].parse()?));
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("the publisher process failed: {status}");
        }
        result.context("the publisher printed no result")
    })
    .await?
}

// ---------------------------------------------------------------------------------------------
// The subscriber side.

/// What the bench handler counts: deliveries, the last delivery's time, and latencies.
#[derive(Debug, Default)]
struct Sink {
    count: AtomicU64,
    first_sent_ns: AtomicU64,
    last_ns: AtomicU64,
    keep_latencies: std::sync::atomic::AtomicBool,
    latencies: Mutex<Vec<u64>>,
    notify: Notify,
}

#[derive(Clone, Debug, Default)]
struct SinkRef(Arc<Sink>);

impl Sink {
    fn reset(&self, keep_latencies: bool) {
        self.count.store(0, Ordering::SeqCst);
        self.first_sent_ns.store(u64::MAX, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
        self.keep_latencies.store(keep_latencies, Ordering::SeqCst);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn latencies(&self) -> Vec<u64> {
        let mut v = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.sort_unstable();
        v
    }
}

/// The no-op handler: counts, and notes the latency when asked to.
async fn noop(event: BenchEvent, State(sink): State<SinkRef>) {
    let now = now_ns();
    if sink.0.keep_latencies.load(Ordering::Relaxed) {
        sink.0
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now.saturating_sub(event.sent_ns));
    }
    sink.0
        .first_sent_ns
        .fetch_min(event.sent_ns, Ordering::Relaxed);
    sink.0.last_ns.store(now, Ordering::Relaxed);
    sink.0.count.fetch_add(1, Ordering::Release);
    sink.0.notify.notify_one();
}

/// `--queue-capacity N`: the no-op handler's queue capacity (the bus's default otherwise).
static QUEUE_CAPACITY: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

async fn subscriber(url: &str, sink: &SinkRef, stalled: bool) -> anyhow::Result<EventBus> {
    let mut options = HandlerOptions::new().name("noop").no_timeout();
    if let Some(capacity) = QUEUE_CAPACITY.get().copied().flatten() {
        options = options.queue_capacity(capacity);
    }
    let mut builder = EventBus::builder()
        .service("bench-subscriber")
        .state(sink.clone())
        .handler_with(options, noop)
        .shutdown_timeout(Duration::from_millis(200))
        .on_error(|_| {});
    if stalled {
        builder = builder.handler_with(
            HandlerOptions::new().name("stalled").no_timeout(),
            |_: BenchEvent| std::future::pending::<()>(),
        );
    }
    Ok(builder.connect(url).await?)
}

/// Waits until `count` reaches `target`, or until it makes no progress for `idle`.
async fn wait_count(count: &AtomicU64, target: u64, idle: Duration) -> u64 {
    let mut last = count.load(Ordering::Acquire);
    let mut since = Instant::now();
    loop {
        let now = count.load(Ordering::Acquire);
        if now >= target {
            return now;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > idle {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// User + system CPU time of this process, and its resident set size in bytes.
fn cpu_and_rss() -> (Duration, u64) {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses): utime is 14th overall,
            // stime 15th, so 12th and 13th after ") ".
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        })
        .unwrap_or(0);
    (Duration::from_secs_f64(ticks as f64 / clock_ticks()), rss)
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// One end-to-end run: a publisher process sends `n` events (16 in flight, or at `rate`), the
/// subscriber bus handles them.
#[derive(Debug, Default, Clone)]
struct E2e {
    published: u64,
    delivered: u64,
    rate: f64,
    cpu_per_event: Duration,
    rss: u64,
    latencies: Vec<u64>,
}

/// Measures one end-to-end run against the server or cluster at `url`: `n` events, at `rate`
/// when given, with a stalled handler beside the no-op one when `stalled`.
async fn e2e(
    url: &str,
    n: u64,
    rate: Option<u64>,
    stalled: bool,
    keep_latencies: bool,
) -> anyhow::Result<E2e> {
    let sink = SinkRef::default();
    sink.0.reset(keep_latencies);
    if keep_latencies {
        sink.0
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(n as usize);
    }
    let bus = subscriber(url, &sink, stalled).await?;
    let (cpu0, _) = cpu_and_rss();
    let mut args = vec!["--count".to_owned(), n.to_string()];
    if let Some(rate) = rate {
        args.extend(["--rate".to_owned(), rate.to_string()]);
    }
    let (published, errors) = run_publisher(url, &args).await?;
    if errors > 0 {
        eprintln!("  publisher: {errors} publishes failed");
    }
    let delivered = wait_count(&sink.0.count, published, Duration::from_secs(3)).await;
    let (cpu1, rss) = cpu_and_rss();
    let last = sink.0.last_ns.load(Ordering::Acquire);
    let first = sink.0.first_sent_ns.load(Ordering::Acquire);
    let noop_dropped = bus.metrics().handler("noop").map_or(0, |h| h.dropped);
    if noop_dropped > 0 {
        let beside = if stalled {
            " (beside the stalled one)"
        } else {
            ""
        };
        eprintln!("  the no-op handler's queue overflowed{beside}: {noop_dropped} dropped");
    }
    let _ = bus.shutdown().await;
    // From the first event's creation in the publisher to the last delivery.
    let secs = (last.saturating_sub(first)) as f64 / 1e9;
    Ok(E2e {
        published,
        delivered,
        rate: if secs > 0.0 {
            delivered as f64 / secs
        } else {
            0.0
        },
        cpu_per_event: if delivered > 0 {
            (cpu1.saturating_sub(cpu0)).div_f64(delivered as f64)
        } else {
            Duration::ZERO
        },
        rss,
        latencies: sink.0.latencies(),
    })
}

/// A raw redis-rs subscriber that counts messages on [`CHANNEL`].
struct Drain {
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drain {
    async fn start(url: &str) -> anyhow::Result<Drain> {
        Drain::start_with(url, |_| {}).await
    }

    /// A drain that also runs `each` on every message it counts.
    async fn start_with(
        url: &str,
        mut each: impl FnMut(&redis::Msg) + Send + 'static,
    ) -> anyhow::Result<Drain> {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let task = tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                each(&msg);
                c.fetch_add(1, Ordering::Release);
            }
        });
        Ok(Drain { count, task })
    }
}

// ---------------------------------------------------------------------------------------------
// Baselines.

/// Baseline A once more: redis-benchmark `-P 16` with one raw subscriber attached. Taken
/// before, between and after ours; the ratios are to the median of the three.
async fn baseline_a(server: &RedisServer, n: u64, payload: &str) -> anyhow::Result<f64> {
    let drain = Drain::start(&server.url()).await?;
    let command = publish_command(payload);
    let [rps, _, _] = redis_benchmark(server.port(), &["-P", "16"], n, &command).await?;
    wait_count(&drain.count, n, Duration::from_secs(3)).await;
    drain.task.abort();
    Ok(rps)
}

/// `PUBLISH events:bench <payload>`, for redis-benchmark.
fn publish_command(payload: &str) -> [&str; 3] {
    ["PUBLISH", CHANNEL, payload]
}

/// Runs redis-benchmark with `--csv` on `command` (on a blocking thread: the runtime's workers
/// stay free for the subscriber); returns (requests per second, p50 ms, p99 ms).
async fn redis_benchmark(
    port: u16,
    extra: &[&str],
    n: u64,
    command: &[&str],
) -> anyhow::Result<[f64; 3]> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1"])
        .args(extra)
        .args(["-n", &n.to_string(), "--csv"])
        .args(command);
    let name = format!("\"{}", command[0]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
    // "p99_latency_ms","max_latency_ms"
    let row = text
        .lines()
        .find(|l| l.starts_with(&name))
        .with_context(|| format!("no result from redis-benchmark: {text}"))?;
    let cols: Vec<f64> = row
        .rsplit("\",\"")
        .take(7)
        .map(|c| c.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    // Reversed: max, p99, p95, p50, min, avg, rps.
    Ok([cols[6], cols[3], cols[1]])
}

/// Publishes `n` payloads, `payload(seq)` each, through a raw redis-rs multiplexed
/// connection, `IN_FLIGHT` at a time; returns publishes per second.
async fn raw_publish<P: AsRef<[u8]>>(
    url: &str,
    n: u64,
    payload: impl Fn(u64) -> P,
) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let conn = client.get_multiplexed_async_connection().await?;
    let started = Instant::now();
    let errors = futures_util::stream::iter(0..n)
        .map(|seq| {
            let mut conn = conn.clone();
            let payload = payload(seq);
            async move {
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(payload.as_ref())
                    .query_async::<i64>(&mut conn)
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0u64, |e, r| async move { e + u64::from(r.is_err()) })
        .await;
    if errors > 0 {
        bail!("{errors} raw publishes failed");
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// A fresh envelope of a `BenchEvent`, encoded: what each of our publishes sends.
fn fresh_envelope(seq: u64) -> Vec<u8> {
    eventbus::Envelope::new(BenchEvent::new(seq))
        .with_source("bench-publisher")
        .encode()
        .unwrap_or_default()
}

/// Publishes `n` events through a bus, `IN_FLIGHT` at a time; returns publishes per second.
async fn bus_publish(bus: &EventBus, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let errors = futures_util::stream::iter(0..n)
        .map(|seq| bus.publish(BenchEvent::new(seq)))
        .buffer_unordered(IN_FLIGHT)
        .fold(0u64, |e, r| async move { e + u64::from(r.is_err()) })
        .await;
    if errors > 0 {
        bail!("{errors} bus publishes failed");
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The events of one `publish_all` call in the batch rows.
const BATCH: u64 = 1000;

/// Publishes `n` events through a bus with `publish_all`, [`BATCH`] per call; returns events
/// per second.
async fn bus_publish_all(bus: &EventBus, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut seq = 0;
    while seq < n {
        let end = (seq + BATCH).min(n);
        bus.publish_all((seq..end).map(BenchEvent::new)).await?;
        seq = end;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The subscriber bus fed by redis-benchmark `-P 16` publishing one envelope over and over:
/// what the subscriber side handles when the publisher is not the bottleneck. Returns
/// (published per second, delivered per second, delivered, CPU per event).
async fn subscriber_capacity(
    server: &RedisServer,
    n: u64,
) -> anyhow::Result<(f64, f64, u64, Duration)> {
    subscriber_fed(&server.url(), server.port(), "PUBLISH", n).await
}

/// [`subscriber_capacity`] of a bus connected to `url`, redis-benchmark sending `verb` (`PUBLISH`
/// or `SPUBLISH`) to the server on `port`.
async fn subscriber_fed(
    url: &str,
    port: u16,
    verb: &str,
    n: u64,
) -> anyhow::Result<(f64, f64, u64, Duration)> {
    let sink = SinkRef::default();
    sink.0.reset(false);
    let bus = subscriber(url, &sink, false).await?;
    let envelope = eventbus::Envelope::new(BenchEvent::new(0))
        .with_source("bench-publisher")
        .encode()?;
    let envelope = String::from_utf8(envelope)?;
    let (cpu0, _) = cpu_and_rss();
    let started = now_ns();
    let command = [verb, CHANNEL, envelope.as_str()];
    let [published_rps, _, _] = redis_benchmark(port, &["-P", "16"], n, &command).await?;
    let delivered = wait_count(&sink.0.count, n, Duration::from_secs(3)).await;
    let dropped = bus.metrics().handler("noop").map_or(0, |h| h.dropped);
    if delivered < n {
        eprintln!(
            "  the subscriber fed by redis-benchmark handled {delivered} of {n}: {dropped} dropped by a full queue"
        );
    }
    let (cpu1, _) = cpu_and_rss();
    let secs = sink
        .0
        .last_ns
        .load(Ordering::Acquire)
        .saturating_sub(started) as f64
        / 1e9;
    let _ = bus.shutdown().await;
    Ok((
        published_rps,
        if secs > 0.0 {
            delivered as f64 / secs
        } else {
            0.0
        },
        delivered,
        (cpu1.saturating_sub(cpu0)).div_f64(delivered.max(1) as f64),
    ))
}

/// Latency from publish to handler with one event in flight: publisher and subscriber buses
/// in this process, each with its own connections.
async fn one_in_flight(server: &RedisServer, samples: u64) -> anyhow::Result<Vec<u64>> {
    let sink = SinkRef::default();
    let sub = subscriber(&server.url(), &sink, false).await?;
    let publisher = EventBus::builder()
        .service("bench-publisher")
        .connect(&server.url())
        .await?;
    let warmup = samples / 10;
    for round in 0..warmup + samples {
        if round == warmup {
            sink.0.reset(true);
        }
        let before = sink.0.count.load(Ordering::Acquire);
        publisher.publish(BenchEvent::new(round)).await?;
        let delivered = async {
            loop {
                let notified = sink.0.notify.notified();
                if sink.0.count.load(Ordering::Acquire) > before {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), delivered)
            .await
            .is_err()
        {
            bail!("event {round} was not delivered within 2 s");
        }
    }
    let _ = publisher.shutdown().await;
    let _ = sub.shutdown().await;
    Ok(sink.0.latencies())
}

// ---------------------------------------------------------------------------------------------
// The run and the table.

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{cores} cores ({cpu}), redis-server {redis}")
}

/// Output-buffer disconnects so far: the server's counter where it has one (Redis ≥ 7.2),
/// otherwise the lines of its log that say a client was closed for its output buffer.
fn buffer_disconnects(server: &RedisServer) -> u64 {
    let info = server.cli(&["INFO", "stats"]);
    let counter = info.lines().find_map(|l| {
        l.strip_prefix("client_output_buffer_limit_disconnections:")
            .and_then(|v| v.trim().parse().ok())
    });
    counter.unwrap_or_else(|| {
        server
            .log()
            .lines()
            .filter(|l| l.contains("output buffer"))
            .count() as u64
    })
}

/// The 1-minute load average: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

async fn run(sizes: Sizes, quick: bool) -> anyhow::Result<()> {
    let load_before = load_average();
    let server = RedisServer::start();
    let url = server.url();
    let envelope_len = fresh_envelope(0).len();
    let data_len = serde_json::to_vec(&BenchEvent::new(0))?.len();

    let mut publishing = single::publishing(&server, &sizes).await?;
    let disconnects_before = buffer_disconnects(&server);
    let delivering = single::delivering(&server, &sizes).await?;
    publishing.again(&server, &sizes, "after").await?;
    if sizes.publish_rows {
        progress::finish();
        println!(
            "{}",
            single::publish_line(&publishing, &delivering, sizes.load_rate)
        );
        return Ok(());
    }
    let steady_rows = single::steady_rows(&server, &sizes).await?;
    let stalled = single::stalled_row(&url, sizes.stalled, &delivering.alone).await?;
    let disconnects = buffer_disconnects(&server) - disconnects_before;

    let c_p50 = publishing.c_p50();
    let durable_rows = durable::rows(&server, sizes.durable, sizes.durable_latency, c_p50).await?;
    let cluster_rows = cluster::rows(sizes.cluster).await?;
    let memory_rows = memory::rows(sizes.durable).await?;
    let receive_rows =
        receive::rows(&server, sizes.durable, sizes.load_rate, sizes.load_secs).await?;
    let outbox_rows = outbox::rows(&server, &sizes.outbox).await?;
    let schedule_rows = schedule::rows(&server, sizes.durable, sizes.outbox.steady_secs).await?;
    // With `--features tls`: the rediss:// rows, on a TLS server of their own.
    #[cfg(feature = "tls")]
    let tls_rows = tls::rows(sizes.durable).await?;
    #[cfg(not(feature = "tls"))]
    let tls_rows = Vec::new();

    let (p, d) = (&publishing, &delivering);
    let rows: Vec<Row> = single::publish_rows(p, sizes.publish, envelope_len)
        .into_iter()
        .chain(single::delivery_rows(p, d, &sizes, disconnects))
        .chain(single::latency_rows(p, d, sizes.load_rate, steady_rows))
        .chain([stalled])
        .chain(receive_rows)
        .chain(durable_rows)
        .chain(cluster_rows)
        .chain(memory_rows)
        .chain(outbox_rows)
        .chain(schedule_rows)
        .chain(tls_rows)
        .collect();
    print_header(&sizes, quick, &load_before, envelope_len, data_len, d);
    progress::finish();
    print_table(&rows);
    Ok(())
}

/// The lines above the table: the machine, the load, the sizes.
fn print_header(
    sizes: &Sizes,
    quick: bool,
    load_before: &str,
    envelope_len: usize,
    data_len: usize,
    d: &single::Delivering,
) {
    println!(
        "eventbus benchmark ({} run) on {}; load average {load_before} before, {} after",
        if quick { "quick" } else { "full" },
        machine(),
        load_average()
    );
    println!(
        "redis-server on loopback, default limits; baselines publish {PAYLOAD} bytes, ours an \
         envelope of {envelope_len} bytes around {data_len} bytes of event data; N = {} \
         (publish), {} (end to end), {} (C); latencies from {} + {} samples; no-op handler \
         queue: {}",
        sizes.publish,
        sizes.e2e,
        sizes.one_at_a_time,
        d.single.len(),
        d.loaded.latencies.len(),
        QUEUE_CAPACITY
            .get()
            .copied()
            .flatten()
            .map_or("default".to_owned(), |c| c.to_string())
    );
    println!("{}", cluster::note());
}
