//! The stream reader on a real redis-server, seen from the transport and from the bus: entries
//! released without an acknowledgement are delivered again, a claimed entry carries its own
//! delivery count, a killed reader connection counts as a reconnect, and a server that
//! restarted empty loses nothing appended after the restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventbus::redis::RedisOptions;
use eventbus::transport::{Ack, BoxFuture, GroupSpec, Inbound, Transport};
use eventbus::{
    ConnectionEvent, DurableOptions, Event, EventBus, HandlerOptions, Message, StartFrom,
};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(60);
const STREAM: &str = "events:job_done";
const GROUP: &str = "workers";

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "job_done", durable)]
struct JobDone {
    n: u64,
}

/// One delivery as the transport handed it over.
#[derive(Debug, Clone)]
struct Seen {
    entry: String,
    deliveries: u32,
    claimed: bool,
}

/// An `Inbound` that records deliveries and acknowledges them, or drops the first delivery of
/// each entry without an acknowledgement, or keeps every handle unacknowledged.
#[derive(Default)]
struct Probe {
    seen: Mutex<Vec<Seen>>,
    events: Mutex<Vec<ConnectionEvent>>,
    drop_first: AtomicBool,
    keep: AtomicBool,
    kept: Mutex<Vec<Ack>>,
}

impl Probe {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn of(&self, entry: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.entry == entry)
            .collect()
    }
}

impl Inbound for Probe {
    fn message(&self, message: Message) {
        let ack = message.ack.expect("a durable entry carries an ack");
        let entry = ack.entry_id.to_string();
        let first = !self.seen().iter().any(|s| s.entry == entry);
        self.seen.lock().unwrap().push(Seen {
            entry,
            deliveries: ack.deliveries,
            claimed: ack.claimed,
        });
        if first && self.drop_first.load(Ordering::SeqCst) {
            return;
        }
        if self.keep.load(Ordering::SeqCst) {
            self.kept.lock().unwrap().push(ack);
            return;
        }
        tokio::spawn(async move { ack.ack().await.expect("XACK") });
    }
    fn connection(&self, event: ConnectionEvent) {
        self.events.lock().unwrap().push(event);
    }
    fn credit(&self, _: &str) -> usize {
        256
    }
    fn credit_available(&self, _: &str) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(10)))
    }
    fn trimmed(&self, _: &str, _: &str) {}
}

async fn transport(server: &RedisServer, probe: &Arc<Probe>) -> Arc<dyn Transport> {
    let inbound: Arc<dyn Inbound> = probe.clone();
    eventbus::redis::connect(&server.url(), inbound, &RedisOptions::default())
        .await
        .unwrap()
}

fn spec(claim_idle: Duration) -> GroupSpec {
    GroupSpec::new(STREAM, GROUP, "me")
        .start(StartFrom::Beginning)
        .claim_idle(claim_idle)
}

fn envelope(n: u64) -> String {
    format!(r#"{{"type":"job_done","id":{n},"data":{{"n":{n}}}}}"#)
}

/// An entry the bus dropped without acknowledging it is released: this process delivers it
/// again (here at its next claim pass), with its delivery count raised, and acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_dropped_unacknowledged_is_delivered_again() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let probe = Arc::new(Probe::default());
    probe.drop_first.store(true, Ordering::SeqCst);
    let t = transport(&server, &probe).await;
    t.join(&spec(Duration::from_secs(2))).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(t.append(STREAM, Bytes::from(envelope(n))).await.unwrap());
    }
    let twice = || ids.iter().all(|id| probe.of(id).len() == 2);
    assert!(wait_for(LIMIT, twice).await, "{:?}", probe.seen());
    for id in &ids {
        let runs = probe.of(id);
        assert_eq!(runs[1].deliveries, 2, "{id}: {runs:?}");
    }
    let pending = || server.cli(&["XPENDING", STREAM, GROUP]).starts_with('0');
    assert!(wait_for(LIMIT, pending).await, "every entry acknowledged");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        probe.seen().len(),
        20,
        "no third delivery: {:?}",
        probe.seen()
    );
    t.close().await.unwrap();
}

/// Entries claimed together from a dead consumer each carry their own delivery count, however
/// many entries this consumer holds between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_entry_carries_its_own_delivery_count() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    server.cli(&["XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"]);
    server.cli(&["XADD", STREAM, "1-1", "envelope", &envelope(1)]);
    let read = [
        "XREADGROUP",
        "GROUP",
        GROUP,
        "dead",
        "COUNT",
        "1",
        "STREAMS",
        STREAM,
        ">",
    ];
    server.cli(&read);
    let probe = Arc::new(Probe::default());
    probe.keep.store(true, Ordering::SeqCst);
    let t = transport(&server, &probe).await;
    t.join(&spec(Duration::from_secs(2))).await.unwrap();
    for n in 2..20 {
        server.cli(&["XADD", STREAM, &format!("{n}-1"), "envelope", &envelope(n)]);
    }
    assert!(wait_for(LIMIT, || probe.seen().len() == 18).await);
    // One more for the dead consumer, and its first entry taken again: both go idle together.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(STREAM)
        .arg("20-1")
        .arg("envelope")
        .arg(envelope(20))
        .ignore()
        .cmd("XREADGROUP")
        .arg(&read[1..])
        .ignore()
        .cmd("XCLAIM")
        .arg(&[STREAM, GROUP, "dead", "0", "1-1"])
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        wait_for(LIMIT, || probe.seen().len() == 20).await,
        "{:?}",
        probe.seen()
    );
    let first = probe.of("1-1");
    let last = probe.of("20-1");
    assert!(first[0].claimed && last[0].claimed, "{first:?} {last:?}");
    assert_eq!(first[0].deliveries, 3, "read, XCLAIM, claim");
    assert_eq!(last[0].deliveries, 2, "read, claim");
    for s in probe.seen().iter().filter(|s| !s.claimed) {
        assert_eq!(s.deliveries, 1, "{s:?}");
    }
    t.close().await.unwrap();
}

/// `CLIENT KILL` of the stream reader's connection: it connects again, and the bus counts a
/// reconnect and reports `Reconnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_reader_connection_is_a_reconnect() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let handled = eventbus_suite::Seen::new();
    let h = handled.clone();
    let bus = EventBus::builder()
        .service("jobs")
        .handler(move |job: JobDone| {
            let h = h.clone();
            async move { h.push(job.n) }
        })
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    let mut events = bus.connection_events();
    let reader = || {
        server
            .clients()
            .into_iter()
            .find(|l| l.contains("cmd=xreadgroup"))
    };
    assert!(wait_for(LIMIT, || reader().is_some()).await);
    let line = reader().unwrap();
    let id = eventbus_suite::redis_server::client_field(&line, "id").unwrap();
    server.cli(&["CLIENT", "KILL", "ID", id]);
    let reconnected = tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await {
                Ok(ConnectionEvent::Reconnected {
                    role: "consumer", ..
                }) => return,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(reconnected.is_ok(), "no Reconnected for the consumer");
    assert!(bus.metrics().reconnects >= 1, "{:#?}", bus.metrics());
    bus.publish(JobDone { n: 7 }).await.unwrap();
    assert!(wait_for(LIMIT, || handled.snapshot() == vec![7]).await);
    bus.shutdown().await.unwrap();
}

/// Publishes `JobDone`s from `n` on until `stop`, each 2 ms apart; returns the ones whose
/// publish returned `Ok`, with when it returned.
async fn publish_until(bus: EventBus, stop: Arc<AtomicBool>) -> Vec<(u64, Instant)> {
    let mut ok = Vec::new();
    let mut n = 1_000;
    while !stop.load(Ordering::SeqCst) {
        if bus.publish(JobDone { n }).await.is_ok() {
            ok.push((n, Instant::now()));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ok
}

/// A server without persistence is killed and restarted empty under load: the group is created
/// again where nothing appended after the restart is skipped, every publish that returned `Ok`
/// after the restart is handled, and the gap is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_empty_skips_nothing_published_after() {
    let Some(mut server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let handled: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let h = handled.clone();
    let options = HandlerOptions::new().durable(DurableOptions::new().group("jobs:count"));
    let bus = EventBus::builder()
        .service("jobs")
        .handler_with(options, move |job: JobDone| {
            let h = h.clone();
            async move {
                h.lock().unwrap().insert(job.n);
            }
        })
        .connect(&url)
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    let mut events = bus.connection_events();
    let publisher = EventBus::builder()
        .service("shop")
        .connect(&url)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn(publish_until(publisher.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let killed = Instant::now();
    server.restart();
    // Appended at once, before the bus's connections are back.
    let mut after: Vec<u64> = (0..5).collect();
    for n in &after {
        let body = format!(r#"{{"type":"job_done","id":"x{n}","data":{{"n":{n}}}}}"#);
        server.cli(&["XADD", STREAM, "*", "envelope", &body]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let ok = publishing.await.unwrap();
    after.extend(ok.iter().filter(|(_, at)| *at > killed).map(|(n, _)| *n));
    assert!(
        after.len() > 5,
        "publishes after the restart: {}",
        after.len()
    );
    let all = || after.iter().all(|n| handled.lock().unwrap().contains(n));
    assert!(
        wait_for(LIMIT, all).await,
        "{} of {} handled",
        {
            let h = handled.lock().unwrap();
            after.iter().filter(|n| h.contains(n)).count()
        },
        after.len()
    );
    let mut gap = None;
    while let Ok(e) = events.try_recv() {
        if let ConnectionEvent::GroupRecreated { stream, group, at } = e {
            gap = Some((stream, group, at));
        }
    }
    let (stream, group, at) = gap.expect("the lost group is reported");
    assert_eq!(
        (stream.as_str(), group.as_str(), at.as_str()),
        (STREAM, "jobs:count", "0")
    );
    publisher.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}
