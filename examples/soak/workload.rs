//! The services under test: publisher and consumer processes (this binary run with a role),
//! the two event types they exchange and the lines they write for the orchestrator.
//!
//! Every line is one record, times in milliseconds since the Unix epoch:
//!
//! ```text
//! ready <t>                                      both roles, once the bus is up
//! published <kind> <key> <t0> <t1>              publisher: a publish that returned Ok
//! unconfirmed <kind> <key> <t0> <t1>            publisher: a publish that returned an error
//! order_failed <key> <t> <error>                publisher: placing an order failed
//! done                                           publisher: stopped publishing
//! handled <handler> <key> <t> [<entry>]         consumer: a run that returned Ok (durable: its entry)
//! attempt_failed <handler> <key> <t>            consumer: a run that failed on purpose
//! cancelled <handler> <key> <t>                 consumer: a durable run dropped before its end
//!                                                (it outlived its timeout)
//! gap <disconnected|resubscribed> <role> <t>    consumer: connection events
//! metrics|final <handler> <handled> <failed> <retried> <dropped> <redelivered> <claimed>
//! stopped                                        consumer: after a clean shutdown
//! ```
//!
//! The orchestrator counts deliveries per consumer group from the `handled` lines of every
//! process, so consumers hold no state per event (their memory is measured).

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventbus::{
    ConnectionEvent, DeliveryInfo, DurableOptions, Event, EventBus, HandlerOptions, RetryPolicy,
    State,
};
use eventbus_suite::{connect, fast};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A broadcast event (pub/sub): every consumer process should get it, unless in a gap.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "soak_tick")]
pub(crate) struct Tick {
    key: String,
}

/// A durable event (stream): every consumer group must handle it at least once.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "soak_job", durable)]
pub(crate) struct Job {
    key: String,
}

/// The service name of the consumers; durable groups are `soak:<handler>`.
pub(crate) const SERVICE: &str = "soak";
/// The stream of [`Job`].
pub(crate) const JOB_STREAM: &str = "events:soak_job";
/// Where [`Job`]s that failed every attempt would go.
pub(crate) const JOB_DEAD_LETTERS: &str = "eventbus:dead:soak_job";
/// The pub/sub handlers of every consumer.
pub(crate) const TICK_HANDLERS: [&str; 2] = ["tick_fast", "tick_slow"];
/// The durable handlers (one consumer group each).
pub(crate) const JOB_HANDLERS: [&str; 3] = ["job_fast", "job_slow", "job_flaky"];
/// The handler that fails on purpose, once per event whose sequence number is a multiple of 5.
pub(crate) const FLAKY: &str = "job_flaky";
/// How long a dead consumer's entries wait before another consumer claims them. A live
/// consumer keeps the entries it holds alive every third of this, so it must outlast the
/// longest time a fault keeps a live consumer from the server plus that third: a stop (under
/// 3 s), the server down (under 2 s, then the reconnection), a proxy delay (1.5 s each way).
/// Then a duplicate run is explained only by a consumer that died (`kill -9`) or a stop longer
/// than this (none in the schedule), and the accounting counts every other one.
pub(crate) const CLAIM_IDLE: Duration = Duration::from_secs(8);

/// Milliseconds since the Unix epoch: the one clock every process of the run shares.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes one line to standard output (line-buffered: a `kill -9` loses no written line).
fn emit(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Resolves when standard input ends: the orchestrator closed it, or died.
async fn stdin_closed() {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// Publishes `rate` events a second, alternating ticks and jobs, until stdin closes; then one
/// last tick, the marker the orchestrator waits for.
pub(crate) async fn publisher(
    name: &str,
    url: &str,
    rate: f64,
    pg: Option<&str>,
) -> anyhow::Result<()> {
    let pool = match pg {
        Some(pg) => Some(crate::orders::pool(pg).await?),
        None => None,
    };
    let builder = EventBus::builder().service(name).redis_options(fast());
    let builder = match &pool {
        Some(pool) => crate::orders::with_outbox(builder, pool),
        None => builder,
    };
    let bus = connect(builder, url).await?;
    emit(format_args!("ready {}", now_ms()));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stdin_closed();
    tokio::pin!(stop);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let key = format!("{name}-{seq}");
        if let Some(pool) = pool.as_ref().filter(|_| seq.is_multiple_of(4)) {
            place_order(&bus, pool, &key).await;
        }
        if seq.is_multiple_of(2) {
            publish_one(&bus, "tick", Tick { key }).await;
        } else {
            publish_one(&bus, "job", Job { key }).await;
        }
        seq += 1;
    }
    let key = format!("{name}-{seq}");
    publish_one(&bus, "tick", Tick { key }).await;
    emit(format_args!("done"));
    bus.shutdown().await?;
    Ok(())
}

/// Places an order through the outbox; says so when PostgreSQL refused (it may be down).
async fn place_order(bus: &EventBus, pool: &sqlx::PgPool, key: &str) {
    if let Err(e) = crate::orders::place(bus, pool, key).await {
        emit(format_args!("order_failed {key} {} {e}", now_ms()));
    }
}

async fn publish_one<E: Event + Clone>(bus: &EventBus, kind: &str, event: E) {
    let key = serde_json::to_value(&event)
        .ok()
        .and_then(|v| v["key"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let t0 = now_ms();
    let outcome = bus.publish(event).await;
    let t1 = now_ms();
    let word = if outcome.is_ok() {
        "published"
    } else {
        "unconfirmed"
    };
    emit(format_args!("{word} {kind} {key} {t0} {t1}"));
}

/// What a consumer process remembers: the flaky events that failed once here and have not
/// succeeded yet (bounded: an entry leaves on success). Delivery counts are added up by the
/// orchestrator from the `handled` lines, so a consumer holds nothing per event.
#[derive(Debug, Clone, Default)]
struct Tally {
    failed_once: Arc<Mutex<HashSet<String>>>,
}

impl Tally {
    fn handled(&self, handler: &'static str, key: &str, entry: Option<&str>) {
        if handler == FLAKY {
            self.lock().remove(key);
        }
        match entry {
            Some(entry) => emit(format_args!("handled {handler} {key} {} {entry}", now_ms())),
            None => emit(format_args!("handled {handler} {key} {}", now_ms())),
        }
    }

    /// Fails the first run in this process of every fifth event.
    fn should_fail(&self, key: &str) -> bool {
        let fifth = key
            .rsplit('-')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|seq| seq % 5 == 1);
        fifth && !self.lock().contains(key)
    }

    fn failed(&self, key: &str) {
        self.lock().insert(key.to_owned());
        emit(format_args!("attempt_failed {FLAKY} {key} {}", now_ms()));
    }

    /// A durable run starting: it writes `handled` or `attempt_failed` when it ends, or
    /// `cancelled` when it is dropped before (its timeout).
    fn run<'a>(&'a self, handler: &'static str, key: &'a str, info: &'a DeliveryInfo) -> Run<'a> {
        Run {
            tally: self,
            handler,
            key,
            entry: info.entry_id.as_deref(),
            over: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.failed_once.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One run of a durable handler. A run that outlived its timeout is dropped by the bus, so the
/// handler never writes its end: the guard writes `cancelled` instead. (A `kill -9` or a
/// `SIGSTOP` drops nothing.)
struct Run<'a> {
    tally: &'a Tally,
    handler: &'static str,
    key: &'a str,
    /// The stream entry it runs.
    entry: Option<&'a str>,
    over: bool,
}

impl Run<'_> {
    fn handled(mut self) {
        self.over = true;
        self.tally.handled(self.handler, self.key, self.entry);
    }

    fn failed(mut self) {
        self.over = true;
        self.tally.failed(self.key);
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if !self.over {
            emit(format_args!(
                "cancelled {} {} {}",
                self.handler,
                self.key,
                now_ms()
            ));
        }
    }
}

async fn tick_fast(tick: Tick, State(tally): State<Tally>) {
    tally.handled("tick_fast", &tick.key, None);
}

/// Slow on purpose, with a small queue: a burst (after a stopped process resumes) overflows.
async fn tick_slow(tick: Tick, State(tally): State<Tally>) {
    tokio::time::sleep(Duration::from_millis(15)).await;
    tally.handled("tick_slow", &tick.key, None);
}

async fn job_fast(job: Job, State(tally): State<Tally>, info: DeliveryInfo) {
    tally.run("job_fast", &job.key, &info).handled();
}

async fn job_slow(job: Job, State(tally): State<Tally>, info: DeliveryInfo) {
    let run = tally.run("job_slow", &job.key, &info);
    tokio::time::sleep(Duration::from_millis(25)).await;
    run.handled();
}

async fn job_flaky(job: Job, State(tally): State<Tally>, info: DeliveryInfo) -> anyhow::Result<()> {
    let run = tally.run(FLAKY, &job.key, &info);
    if tally.should_fail(&job.key) {
        run.failed();
        anyhow::bail!("job {} fails its first run on purpose", job.key);
    }
    run.handled();
    Ok(())
}

fn durable(name: &str) -> HandlerOptions {
    HandlerOptions::new()
        .name(name)
        .durable(DurableOptions::new().claim_idle(CLAIM_IDLE))
}

fn consumer_builder(tally: Tally) -> eventbus::EventBusBuilder {
    let retry =
        RetryPolicy::attempts(4).backoff(Duration::from_millis(20), Duration::from_millis(200));
    EventBus::builder()
        .service(SERVICE)
        .state(tally)
        .redis_options(fast())
        .shutdown_timeout(Duration::from_secs(30))
        .on_connection(report_gap)
        .handler_with(HandlerOptions::new().name("tick_fast"), tick_fast)
        .handler_with(
            HandlerOptions::new().name("tick_slow").queue_capacity(16),
            tick_slow,
        )
        .handler_with(durable("job_fast"), job_fast)
        .handler_with(durable("job_slow"), job_slow)
        .handler_with(durable(FLAKY).retry(retry), job_flaky)
}

fn report_gap(event: &ConnectionEvent) {
    match event {
        ConnectionEvent::Disconnected { role, .. } => {
            emit(format_args!("gap disconnected {role} {}", now_ms()));
        }
        ConnectionEvent::Resubscribed { .. } => {
            emit(format_args!("gap resubscribed subscriber {}", now_ms()));
        }
        _ => {}
    }
}

/// Handles ticks and jobs (and orders, with PostgreSQL) until stdin closes, writing its
/// metrics every second.
pub(crate) async fn consumer(url: &str, pg: Option<&str>) -> anyhow::Result<()> {
    let builder = consumer_builder(Tally::default());
    let builder = match pg {
        Some(pg) => crate::orders::with_inbox(builder, &crate::orders::pool(pg).await?),
        None => builder,
    };
    let bus = connect(builder, url).await?;
    bus.ready(Duration::from_secs(30)).await?;
    emit(format_args!("ready {}", now_ms()));
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let stop = stdin_closed();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = every.tick() => emit_metrics(&bus, "metrics"),
        }
    }
    let report = bus.shutdown().await;
    emit_metrics(&bus, "final");
    if let Err(e) = report {
        eprintln!("soak consumer: {e}");
    }
    emit(format_args!("stopped"));
    Ok(())
}

fn emit_metrics(bus: &EventBus, word: &str) {
    for h in bus.metrics().handlers {
        emit(format_args!(
            "{word} {} {} {} {} {} {} {}",
            h.name, h.handled, h.failed, h.retried, h.dropped, h.redelivered, h.claimed
        ));
    }
}
