//! A writer appending oversized and malformed entries to a durable stream, behind a stalled
//! handler, cannot make a consumer hold unbounded memory: entries larger than
//! `max_message_size` are not parsed and only their first bytes are kept, the handler's queued
//! payloads stay within its byte budget (its reader slows down), every bad entry goes to the
//! dead letters with its reason and is acknowledged, and the next valid entry is handled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventbus::{DecodeError, Event, EventBus, Failure, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "blob_stored", durable)]
struct BlobStored {
    n: u64,
}

const STREAM: &str = "events:blob_stored";
const DEAD: &str = "eventbus:dead:blob_stored";
const HUGE: u64 = 60;
const HUGE_SIZE: usize = 5 << 20;
const MALFORMED: u64 = 10_000;
const LIMIT: Duration = Duration::from_secs(120);
/// How much the consumer may grow while it holds the stream's bad entries behind its stalled
/// handler: its byte budget (16 MiB) and one read (at most 16 entries when nothing is known of
/// their size, and no more than the budget once one was large), with the allocator's slack.
/// Without a bound it grew by more than 600 MiB.
const BOUND: u64 = 160 << 20;

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Appends `HUGE` entries of `HUGE_SIZE` bytes, made on the server (so that this process never
/// holds them but as their consumer): an envelope's start, then a string too long to read.
fn append_huge(server: &RedisServer) {
    let script = format!(
        "for i = 1, {HUGE} do redis.call('XADD', KEYS[1], '*', 'envelope', \
         '{{\"specversion\":\"1.0\",\"type\":\"blob_stored\",\"data\":\"' .. string.rep('x', {HUGE_SIZE}) .. '\"}}') end"
    );
    server.cli(&["EVAL", &script, "1", STREAM]);
}

/// Appends `MALFORMED` entries, five kinds in turn: not JSON, no `envelope` field, data of the
/// wrong shape, an envelope of another type, JSON that is not an object.
fn append_malformed(server: &RedisServer) {
    let script = format!(
        r#"for i = 1, {MALFORMED} do
             local k = i % 5
             if k == 0 then redis.call('XADD', KEYS[1], '*', 'envelope', 'not json ' .. i)
             elseif k == 1 then redis.call('XADD', KEYS[1], '*', 'body', '{{}}')
             elseif k == 2 then redis.call('XADD', KEYS[1], '*', 'envelope',
               '{{"specversion":"1.0","id":"m' .. i .. '","source":"x","type":"blob_stored","data":{{"n":"many"}}}}')
             elseif k == 3 then redis.call('XADD', KEYS[1], '*', 'envelope',
               '{{"specversion":"1.0","id":"m' .. i .. '","source":"x","type":"x' .. i .. '","data":{{"n":1}}}}')
             else redis.call('XADD', KEYS[1], '*', 'envelope', '[1, 2, 3]') end
           end"#
    );
    server.cli(&["EVAL", &script, "1", STREAM]);
}

/// The largest resident set size seen by a sampler, every 5 ms until stopped.
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss()));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        PeakRss { peak, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_entries_are_dead_lettered_within_a_memory_bound() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let gate = Arc::new(Semaphore::new(0));
    let (too_large, undecodable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (handled, others) = (Seen::new(), Seen::new());
    let (g, h, t, u, o) = (
        gate.clone(),
        handled.clone(),
        too_large.clone(),
        undecodable.clone(),
        others.clone(),
    );
    let bus = EventBus::builder()
        .service("archive")
        // Every dead letter kept (about 10 000 per type by default), to read the first ones.
        .redis_options(eventbus::redis::RedisOptions::new().dead_letter_max_len(None))
        .handler_with(
            HandlerOptions::new().name("index").no_timeout(),
            move |e: BlobStored| {
                let (g, h) = (g.clone(), h.clone());
                async move {
                    g.acquire().await.unwrap().forget();
                    h.push(e.n);
                }
            },
        )
        .on_error(move |f| match f {
            Failure::Decode(d) if matches!(*d.error, DecodeError::TooLarge { .. }) => {
                t.fetch_add(1, Ordering::Relaxed);
            }
            Failure::Decode(_) => {
                u.fetch_add(1, Ordering::Relaxed);
            }
            other => o.push(other.to_string()),
        })
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    bus.publish(BlobStored { n: 0 }).await.unwrap();
    assert!(wait_for(LIMIT, || bus.metrics().handlers[0].in_flight == 1).await);

    let before = rss();
    let sampler = PeakRss::start();
    append_huge(&server);
    append_malformed(&server);
    bus.publish(BlobStored { n: 1 }).await.unwrap();
    // The stalled handler's reader takes what its queue and budget allow, then waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = sampler.stop().saturating_sub(before);
    eprintln!("grew by {} MiB at most", grown >> 20);
    assert!(
        grown < BOUND,
        "the consumer grew by {} MiB behind a stalled handler",
        grown >> 20
    );

    gate.add_permits(1_000_000);
    let bad = HUGE + MALFORMED;
    let index = || bus.metrics().handler("index").cloned().unwrap();
    assert!(
        wait_for(LIMIT, || handled.snapshot() == vec![0, 1]).await,
        "the next valid entry is handled: {:?} {:?}",
        handled.snapshot(),
        index()
    );
    assert!(
        wait_for(LIMIT, || index().dead_lettered == bad).await,
        "{:?}",
        index()
    );
    let i = index();
    assert_eq!((i.decode_errors, i.failed, i.handled), (bad, 0, 2), "{i:?}");
    assert_eq!(too_large.load(Ordering::Relaxed), HUGE);
    assert_eq!(undecodable.load(Ordering::Relaxed), MALFORMED);
    assert!(others.is_empty(), "{:#?}", others.snapshot());
    assert_eq!(server.cli(&["XLEN", DEAD]), bad.to_string());
    let pending = || server.cli(&["XPENDING", STREAM, "archive:index"]);
    assert!(
        wait_for(LIMIT, || pending().starts_with('0')).await,
        "{}",
        pending()
    );

    // The dead letters say why; an oversized entry's keeps its first bytes only.
    let letters = bus.dead_letters("blob_stored", 61).await.unwrap();
    assert!(
        letters[0].error.contains("too large"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].payload.len(), 4096);
    let last = &letters[60];
    assert!(last.error.contains("not JSON"), "{}", last.error);
    let types: String = server.cli(&["KEYS", "eventbus:dead:*"]);
    assert_eq!(types, DEAD, "dead letters of one type only");
    bus.shutdown().await.unwrap();
}
