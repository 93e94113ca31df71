//! Durable delivery on a real redis-server, with real processes: the `durable_orders`
//! example's workers share a consumer group; workers are killed, stopped and restarted, and
//! so is the server. Every publish that returned `Ok` is counted as handled.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{DurableOptions, Event, EventBus, HandlerOptions, RetryPolicy};
use eventbus_suite::examples::example_binary;
use eventbus_suite::python::{finish_peer, peer, python_with_redis};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The example's event, by its wire shape.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", durable)]
struct OrderPlaced {
    order_id: u64,
    total: f64,
}

const LIMIT: Duration = Duration::from_secs(120);

/// How often each order was handled, across every worker.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<HashMap<u64, u32>>>);

impl Tally {
    fn record(&self, id: u64) {
        *self.0.lock().unwrap().entry(id).or_default() += 1;
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn duplicates(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .values()
            .map(|n| u64::from(n - 1))
            .sum()
    }
}

/// A worker process of the example, its handled orders counted into the tally.
struct Worker {
    child: Child,
    handled: Seen<u64>,
}

async fn worker(url: &str, tally: &Tally, args: &[&str]) -> Worker {
    let mut child = Command::new(example_binary("durable_orders"))
        .arg("worker")
        .args(args)
        .env("REDIS_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start a worker");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let handled = Seen::new();
    // Entries waiting in the stream may be handled before the worker says it is ready.
    loop {
        let line = tokio::time::timeout(LIMIT, lines.next_line()).await;
        let Ok(Ok(Some(line))) = line else {
            panic!("the worker did not start: {line:?}");
        };
        if line == "ready" {
            break;
        }
        record(&line, &handled, tally);
    }
    let (h, t) = (handled.clone(), tally.clone());
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            record(&line, &h, &t);
        }
    });
    Worker { child, handled }
}

/// Counts a worker's `handled <order>` line.
fn record(line: &str, handled: &Seen<u64>, tally: &Tally) {
    if let Some(id) = line.strip_prefix("handled ").and_then(|s| s.parse().ok()) {
        handled.push(id);
        tally.record(id);
    }
}

impl Worker {
    /// Asks the worker to stop cleanly (it shuts down when its stdin closes).
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(LIMIT, self.child.wait()).await;
        assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    }

    /// `kill -9`.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill -9 the worker");
    }
}

/// Publishes orders `range` from this process, 16 at a time; returns how many returned `Ok`.
async fn publish(url: &str, range: std::ops::Range<u64>) -> u64 {
    let bus = EventBus::builder()
        .service("shop")
        .connect(url)
        .await
        .unwrap();
    let ids: Vec<u64> = range.collect();
    let mut ok = 0;
    for chunk in ids.chunks(16) {
        let sends = chunk.iter().map(|&order_id| {
            bus.publish(OrderPlaced {
                order_id,
                total: 1.0,
            })
        });
        ok += futures_util::future::join_all(sends)
            .await
            .into_iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.entry_id.is_some()))
            .count() as u64;
    }
    bus.shutdown().await.unwrap();
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_stream_exactly_once() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    const N: u64 = 50_000;
    let url = server.url();
    let tally = Tally::default();
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(worker(&url, &tally, &[]).await);
    }
    assert_eq!(publish(&url, 0..N).await, N);
    assert!(
        wait_for(LIMIT, || tally.distinct() as u64 == N).await,
        "{} of {N} handled",
        tally.distinct()
    );
    assert_eq!(tally.duplicates(), 0, "nothing failed, so nothing twice");
    let split: Vec<usize> = workers.iter().map(|w| w.handled.len()).collect();
    assert!(
        split.iter().all(|&n| n > 0),
        "the work is spread: {split:?}"
    );
    assert_eq!(split.iter().sum::<usize>() as u64, N);
    for w in workers {
        w.stop().await;
    }
    let pending = server.cli(&["XPENDING", "events:order_placed", "billing:charge"]);
    assert!(pending.starts_with('0'), "nothing left pending: {pending}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_entries_are_claimed_by_the_others() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    const N: u64 = 20_000;
    let url = server.url();
    let tally = Tally::default();
    let args = ["--claim-idle-ms", "1000", "--delay-ms", "1"];
    let victim = worker(&url, &tally, &args).await;
    let mut survivors = vec![
        worker(&url, &tally, &args).await,
        worker(&url, &tally, &args).await,
    ];
    let publisher = tokio::spawn({
        let url = url.clone();
        async move { publish(&url, 0..N).await }
    });
    assert!(wait_for(LIMIT, || victim.handled.len() >= 200).await);
    let victim_handled = victim.handled.clone();
    victim.kill().await;
    assert_eq!(publisher.await.unwrap(), N);
    assert!(
        wait_for(LIMIT, || tally.distinct() as u64 == N).await,
        "{} of {N} handled at least once",
        tally.distinct()
    );
    let dups = tally.duplicates();
    eprintln!(
        "killed worker handled {} before it died; {dups} duplicate(s) after the claim",
        victim_handled.len()
    );
    for w in survivors.drain(..) {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_were_down_get_what_was_published_meanwhile() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    const N: u64 = 10_000;
    let url = server.url();
    let tally = Tally::default();
    // The group exists from the first start on; then every worker is down.
    worker(&url, &tally, &[]).await.stop().await;
    assert_eq!(publish(&url, 0..N).await, N);
    assert_eq!(tally.distinct(), 0);
    let a = worker(&url, &tally, &[]).await;
    let b = worker(&url, &tally, &[]).await;
    assert!(
        wait_for(LIMIT, || tally.distinct() as u64 == N).await,
        "{} of {N}",
        tally.distinct()
    );
    assert_eq!(tally.duplicates(), 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_a_server_crash() {
    let Some(mut server) = RedisServer::builder()
        .arg("--appendonly", "yes")
        .arg("--appendfsync", "always")
        .start_or_skip()
    else {
        return;
    };
    let url = server.url();
    let tally = Tally::default();
    worker(&url, &tally, &[]).await.stop().await;
    let ok = publish(&url, 0..2000).await;
    assert_eq!(ok, 2000);
    server.kill();
    server.restart();
    let w = worker(&url, &tally, &[]).await;
    assert!(
        wait_for(LIMIT, || tally.distinct() as u64 == ok).await,
        "{} of {ok} acknowledged publishes handled after the crash",
        tally.distinct()
    );
    w.stop().await;
}

/// A poison entry, left pending by a consumer that died, is dead-lettered with its delivery
/// count once it was delivered more than `max_deliveries` times; later events keep flowing;
/// the dead letter can be replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_are_dead_lettered_and_replayed() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let durable = DurableOptions::new()
        .group("billing:charge")
        .claim_idle(Duration::from_millis(200))
        .max_deliveries(1);
    // The first consumer takes the entry and never finishes it.
    let stuck = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().no_timeout().durable(durable.clone()),
            move |_: OrderPlaced| {
                let g = g.clone();
                async move {
                    let _ = g.acquire().await;
                }
            },
        )
        .connect(&url)
        .await
        .unwrap();
    stuck.ready(LIMIT).await.unwrap();
    stuck
        .publish(OrderPlaced {
            order_id: 1,
            total: 1.0,
        })
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || stuck.metrics().handlers[0].in_flight == 1).await);
    drop(stuck);

    let handled = Seen::new();
    let h = handled.clone();
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new()
                .retry(RetryPolicy::never())
                .durable(durable),
            move |o: OrderPlaced| {
                let h = h.clone();
                async move { h.push(o.order_id) }
            },
        )
        .connect(&url)
        .await
        .unwrap();
    bus.publish(OrderPlaced {
        order_id: 2,
        total: 1.0,
    })
    .await
    .unwrap();
    assert!(
        wait_for(LIMIT, || handled.snapshot() == vec![2]).await,
        "{:?}",
        handled.snapshot()
    );
    assert!(
        wait_for(LIMIT, || bus.metrics().handlers[0].dead_lettered == 1).await,
        "{:#?}",
        bus.metrics()
    );
    let letters = bus.dead_letters("order_placed", 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 2, "its delivery count");
    assert!(letters[0].error.contains("poison"), "{}", letters[0].error);
    let pending = server.cli(&["XPENDING", "events:order_placed", "billing:charge"]);
    assert!(
        pending.starts_with('0'),
        "the poison entry was acknowledged: {pending}"
    );
    bus.replay_dead_letter(&letters[0]).await.unwrap();
    assert!(
        wait_for(LIMIT, || handled.len() == 2).await,
        "{:?}",
        handled.snapshot()
    );
    bus.shutdown().await.unwrap();
}

/// Other languages append with plain `XADD events:<type> * envelope <json>`, in the plain shape
/// and in CloudEvents, and read ours with `XREADGROUP`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_publishers_and_readers_speak_the_stream_contract() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let handled = Seen::new();
    let h = handled.clone();
    let bus = EventBus::builder()
        .service("billing")
        .handler(move |o: OrderPlaced| {
            let h = h.clone();
            async move { h.push(o.order_id) }
        })
        .connect(&url)
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    let plain = r#"{"type":"order_placed","id":7,"timestamp":"2026-11-21T07:11:00","data":{"order_id":7,"total":2.5}}"#;
    let cloud = eventbus::Envelope::new(OrderPlaced {
        order_id: 8,
        total: 1.0,
    })
    .with_source("py");
    let cloud = String::from_utf8(cloud.encode().unwrap()).unwrap();
    for payload in [plain, cloud.as_str()] {
        let id = server.cli(&["XADD", "events:order_placed", "*", "envelope", payload]);
        assert!(id.contains('-'), "{id}");
    }
    assert!(
        wait_for(LIMIT, || handled.len() == 2).await,
        "{:?}",
        handled.snapshot()
    );
    assert_eq!(handled.snapshot(), vec![7, 8]);

    let receipt = bus
        .publish(OrderPlaced {
            order_id: 9,
            total: 3.0,
        })
        .await
        .unwrap();
    let entry = receipt.entry_id.clone().unwrap();
    server.cli(&["XGROUP", "CREATE", "events:order_placed", "python", "0"]);
    let read = server.cli(&[
        "XREADGROUP",
        "GROUP",
        "python",
        "p1",
        "COUNT",
        "10",
        "STREAMS",
        "events:order_placed",
        ">",
    ]);
    assert!(read.contains(&entry), "{read}");
    let json = read
        .lines()
        .find(|l| l.contains(&receipt.id))
        .expect("our envelope, as a field value");
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(value["type"], "order_placed");
    assert_eq!(value["data"]["order_id"], 9);
    bus.shutdown().await.unwrap();
}

/// A redis-py service appends with `XADD events:<type> * envelope <json.dumps(..)>`, in the
/// plain shape and in CloudEvents, and reads ours with `XREADGROUP` + `XACK`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_appends_and_reads_the_stream() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let Some(python) = python_with_redis() else {
        return;
    };
    let url = server.url();
    let handled = Seen::new();
    let h = handled.clone();
    let bus = EventBus::builder()
        .service("billing")
        .handler(move |o: eventbus::Envelope<OrderPlaced>| {
            let h = h.clone();
            async move { h.push((o.id().to_owned(), o.source().to_owned(), o.data().order_id)) }
        })
        .connect(&url)
        .await
        .unwrap();
    let events = serde_json::json!([
        {"type": "order_placed", "id": 41, "timestamp": "2026-11-21T07:11:00",
         "data": {"order_id": 41, "total": 2.5}},
        {"specversion": "1.0", "type": "order_placed", "source": "py-shop",
         "id": "py-42", "time": "2026-11-21T07:11:01.000121+00:00",
         "datacontenttype": "application/json", "data": {"order_id": 42, "total": 1.0}},
    ]);
    let lines = finish_peer(peer(
        &python,
        &["xadd", &url, "events:order_placed", &events.to_string()],
    ))
    .await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(r#"{"appended": 41, "entry": ""#),
        "{lines:?}"
    );
    assert!(
        wait_for(LIMIT, || handled.len() == 2).await,
        "{:?}",
        handled.snapshot()
    );
    let got = handled.snapshot();
    assert_eq!((got[0].0.as_str(), got[0].2), ("41", 41), "{got:?}");
    assert_eq!(got[1], ("py-42".to_owned(), "py-shop".to_owned(), 42));

    let mut receipts = Vec::new();
    for order_id in [43, 44] {
        let r = bus
            .publish(OrderPlaced {
                order_id,
                total: 3.0,
            })
            .await
            .unwrap();
        receipts.push(r);
    }
    let lines = finish_peer(peer(
        &python,
        &["xreadgroup", &url, "events:order_placed", "analytics", "4"],
    ))
    .await;
    assert_eq!(lines.last().map(String::as_str), Some("done"), "{lines:?}");
    let read: Vec<serde_json::Value> = lines[..4]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The group starts at the stream's beginning: Python's two entries, then ours.
    assert_eq!(read[0]["data"]["order_id"], 41);
    for (value, receipt) in read[2..].iter().zip(&receipts) {
        assert_eq!(value["entry"], receipt.entry_id.clone().unwrap());
        assert_eq!(value["id"], receipt.id);
        assert_eq!(value["type"], "order_placed");
        assert_eq!(value["source"], "billing");
        assert_eq!(value["specversion"], "1.0");
    }
    let pending = server.cli(&["XPENDING", "events:order_placed", "analytics"]);
    assert!(
        pending.starts_with('0'),
        "Python acknowledged all: {pending}"
    );
    bus.shutdown().await.unwrap();
}
