//! Scheduled delivery on real redis-servers: many events from several buses, each sent once and
//! never early; a server killed with AOF `always` while events wait; cancel races; a cluster
//! with queues on different nodes and a failover of the node holding one; bad input.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use eventbus::redis::RedisOptions;
use eventbus::{Event, EventBus, HandlerOptions, PublishErrorKind, ScheduleId};
use eventbus_suite::redis_server::{RedisServer, wait_until};
use eventbus_suite::{TestEnv, fast, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "reminder_due", durable)]
struct ReminderDue {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "invoice_due", durable)]
struct InvoiceDue {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "cart_reminder")]
struct CartReminder {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "user_nudged", channel = "nudges:{user}")]
struct UserNudged {
    user: u64,
}

const LIMIT: Duration = Duration::from_secs(60);

/// When each `n` arrived, every time it arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<HashMap<u64, Vec<SystemTime>>>>);

impl Arrivals {
    fn record(&self, n: u64) {
        let now = SystemTime::now();
        self.0.lock().unwrap().entry(n).or_default().push(now);
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().map(Vec::len).sum()
    }
    fn times(&self, n: u64) -> Vec<SystemTime> {
        self.0.lock().unwrap().get(&n).cloned().unwrap_or_default()
    }
}

/// A bus whose durable handler records every `ReminderDue`.
async fn consumer(url: &str, arrivals: &Arrivals) -> EventBus {
    let a = arrivals.clone();
    EventBus::builder()
        .service("reminders")
        .redis_options(fast())
        .handler_with(
            HandlerOptions::new().name("remind"),
            move |e: ReminderDue| {
                let a = a.clone();
                async move { a.record(e.n) }
            },
        )
        .connect(url)
        .await
        .expect("connect the consumer")
}

async fn bus(url: &str, service: &str) -> EventBus {
    EventBus::builder()
        .service(service)
        .redis_options(fast())
        .connect(url)
        .await
        .expect("connect")
}

/// Percentile `q` of sorted durations.
fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The example's durable cart expiry, by its wire shape.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "cart_expired", durable)]
struct CartExpired {
    cart_id: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_from_three_service_processes_fire_once_never_early() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let arrivals = Arrivals::default();
    let a = arrivals.clone();
    let consumer = EventBus::builder()
        .service("carts")
        .redis_options(fast())
        .handler_with(
            HandlerOptions::new().name("expire"),
            move |e: CartExpired| {
                let a = a.clone();
                async move { a.record(e.cart_id) }
            },
        )
        .connect(&url)
        .await
        .unwrap();
    const N: u64 = 10_000;
    // Three service processes schedule a third each, due over the next 10 s; each prints the
    // due time the server gave every event.
    let roles: Vec<Role> = (0..3)
        .map(|i| {
            let (from, to) = (i * N / 3, (i + 1) * N / 3);
            let args = [
                from.to_string(),
                (to - from).to_string(),
                "10000".to_owned(),
            ];
            Role::start(&url, &["schedule", &args[0], &args[1], &args[2]])
        })
        .collect();
    let mut due = HashMap::new();
    for role in &roles {
        for line in tokio::task::block_in_place(|| role.lines_until("scheduled")) {
            let mut words = line.split(' ').skip(1).map(|w| w.parse::<u64>().unwrap());
            let (id, ms) = (words.next().unwrap(), words.next().unwrap());
            due.insert(id, SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        }
    }
    assert_eq!(due.len(), N as usize, "every schedule returned Ok");
    assert!(
        wait_for(LIMIT, || arrivals.total() >= N as usize).await,
        "{} of {N} scheduled events arrived",
        arrivals.distinct()
    );
    let mut late = Vec::new();
    for n in 0..N {
        let times = arrivals.times(n);
        assert_eq!(times.len(), 1, "event {n} arrived {} times", times.len());
        let early = due[&n].duration_since(times[0]).unwrap_or_default();
        assert!(
            early <= Duration::from_millis(2),
            "event {n} arrived {early:?} early"
        );
        late.push(times[0].duration_since(due[&n]).unwrap_or_default());
    }
    late.sort();
    println!(
        "10 000 events from three service processes over 10 s: due → handler p50 {:?}, \
         p99 {:?}, max {:?}",
        pct(&late, 0.5),
        pct(&late, 0.99),
        late[late.len() - 1]
    );
    roles.into_iter().for_each(Role::kill);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schedule_that_returned_ok_fires_after_a_kill_with_aof_always() {
    let Some(mut server) = RedisServer::builder()
        .args(&["--appendonly", "yes", "--appendfsync", "always"])
        .start_or_skip()
    else {
        return;
    };
    let url = server.url();
    let arrivals = Arrivals::default();
    let consumer = consumer(&url, &arrivals).await;
    let scheduler = bus(&url, "scheduler").await;
    for n in 0..500 {
        let ahead = Duration::from_millis(1500 + n);
        scheduler
            .publish_after(ReminderDue { n }, ahead)
            .await
            .unwrap();
    }
    server.kill();
    server.restart();
    assert!(
        wait_for(LIMIT, || arrivals.distinct() >= 500).await,
        "{} of 500 scheduled events arrived after the restart",
        arrivals.distinct()
    );
    // One more, scheduled after the others, shows nothing of theirs is still on its way.
    scheduler
        .publish_after(ReminderDue { n: 999 }, Duration::ZERO)
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || !arrivals.times(999).is_empty()).await);
    assert_eq!(arrivals.total(), 501, "each event once");
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_says_whether_the_event_had_fired_and_nothing_is_doubled() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let arrivals = Arrivals::default();
    let consumer = consumer(&url, &arrivals).await;
    let scheduler = bus(&url, "scheduler").await;
    let mut ids = Vec::new();
    for n in (0..100).chain(200..300) {
        let r = scheduler
            .publish_after(ReminderDue { n }, Duration::from_millis(300))
            .await
            .unwrap();
        ids.push((n, r.schedule_id().clone()));
    }
    // The first hundred are cancelled well before they are due.
    for (_, id) in &ids[..100] {
        assert!(scheduler.cancel_scheduled(id).await.unwrap());
    }
    // A hundred more, due a millisecond apart from 200 ms on, race the mover: cancelled from
    // both ends at once from 200 ms on.
    let mut racing = Vec::new();
    for n in 100..200 {
        let ahead = Duration::from_millis(200 + (n - 100));
        let r = scheduler
            .publish_after(ReminderDue { n }, ahead)
            .await
            .unwrap();
        racing.push((n, r.schedule_id().clone()));
    }
    let backwards: Vec<(u64, ScheduleId)> = racing.iter().rev().cloned().collect();
    let (sa, sb) = (scheduler.clone(), scheduler.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ra = tokio::spawn(async move { cancel_all(&sa, racing).await });
    let rb = tokio::spawn(async move { cancel_all(&sb, backwards).await });
    let mut raced = ra.await.unwrap();
    raced.extend(rb.await.unwrap());
    // Each was cancelled by at most one of the two.
    for n in 100..200 {
        let yes = raced.iter().filter(|(m, c)| *m == n && *c).count();
        assert!(yes <= 1, "event {n} was cancelled twice");
    }
    raced.sort_unstable();
    raced.dedup_by(|b, a| {
        let same = a.0 == b.0;
        if same {
            a.1 |= b.1;
        }
        same
    });
    let fired_in_race: Vec<u64> = raced.iter().filter(|(_, c)| !c).map(|(n, _)| *n).collect();
    let expected = 100 + fired_in_race.len();
    assert!(
        wait_for(LIMIT, || arrivals.distinct() >= expected).await,
        "{} of {expected} events arrived",
        arrivals.distinct()
    );
    // The last hundred have fired: cancelling them says so.
    for (_, id) in &ids[100..] {
        assert!(!scheduler.cancel_scheduled(id).await.unwrap());
    }
    scheduler
        .publish_after(ReminderDue { n: 999 }, Duration::ZERO)
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || !arrivals.times(999).is_empty()).await);
    for n in 0..100 {
        assert!(arrivals.times(n).is_empty(), "cancelled event {n} arrived");
    }
    for (n, cancelled) in &raced {
        let got = arrivals.times(*n).len();
        assert_eq!(
            got,
            usize::from(!cancelled),
            "event {n}: cancelled {cancelled}, arrived {got}×"
        );
    }
    for n in 200..300 {
        assert_eq!(arrivals.times(n).len(), 1, "event {n}");
    }
    println!(
        "cancel race: {} of 100 cancelled in time, {} had fired",
        raced.iter().filter(|(_, c)| *c).count(),
        fired_in_race.len()
    );
    consumer.shutdown().await.unwrap();
}

async fn cancel_all(bus: &EventBus, ids: Vec<(u64, ScheduleId)>) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    for (n, id) in ids {
        out.push((n, bus.cancel_scheduled(&id).await.unwrap()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_answers() {
    let env = TestEnv::memory();
    let Some(redis) = TestEnv::redis() else {
        return;
    };
    for url in [env.url.as_str(), redis.url.as_str()] {
        let nudges = Arrivals::default();
        let carts = Arrivals::default();
        let (n, c) = (nudges.clone(), carts.clone());
        let bus = EventBus::builder()
            .handler(move |e: UserNudged| {
                let n = n.clone();
                async move { n.record(e.user) }
            })
            .handler(move |e: CartReminder| {
                let c = c.clone();
                async move { c.record(e.n) }
            })
            .connect(url)
            .await
            .unwrap();
        bus.ready(Duration::from_secs(5)).await.unwrap();
        // A due time in the past fires at once.
        let past = SystemTime::now() - Duration::from_secs(3600);
        bus.publish_at(CartReminder { n: 1 }, past).await.unwrap();
        assert!(
            wait_for(LIMIT, || carts.total() == 1).await,
            "{url}: past due time"
        );
        // Too far ahead: refused, nothing stored.
        let err = bus
            .publish_after(
                CartReminder { n: 2 },
                Duration::from_secs(20 * 366 * 86_400),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), PublishErrorKind::Config, "{url}: {err}");
        assert!(err.to_string().contains("ten years"), "{err}");
        // Unknown ids: false.
        let unknown = ScheduleId::new("events:cart_reminder", "no-such-id");
        assert!(!bus.cancel_scheduled(&unknown).await.unwrap(), "{url}");
        // A keyed type waits in its pattern's queue and reaches its handler.
        let r = bus
            .publish_after(UserNudged { user: 42 }, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(r.schedule_id().queue(), "nudges:*");
        assert_eq!(r.channel, "nudges:42");
        let listed = bus.scheduled("nudges:*", 10).await.unwrap();
        assert!(
            listed.iter().all(|s| s.channel == "nudges:42"),
            "{url}: {listed:?}"
        );
        assert!(
            wait_for(LIMIT, || nudges.times(42).len() == 1).await,
            "{url}: keyed"
        );
        let queues = bus.scheduled_queues().await.unwrap();
        let names: Vec<&str> = queues.iter().map(|q| q.queue.as_str()).collect();
        assert!(
            names.contains(&"nudges:*") && names.contains(&"events:cart_reminder"),
            "{names:?}"
        );
        bus.shutdown().await.unwrap();
    }
}

/// Makes sure the replicas of the node on `port` hold every write made so far to `tag`'s slot.
fn replicated(port: u16, tag: &str) {
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let script = format!("SET {{{tag}}}probe 1\nWAIT 1 5000\n");
    cli.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().nth(1) == Some("1"), "WAIT answered {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_moves_queues_on_their_nodes_and_a_failover_fires_once() {
    let Some(mut env) = TestEnv::cluster() else {
        return;
    };
    let reminders = Arrivals::default();
    let invoices = Arrivals::default();
    let (r, i) = (reminders.clone(), invoices.clone());
    let options = HandlerOptions::new();
    let consumer = EventBus::builder()
        .service("cluster")
        .redis_options(fast())
        .handler_with(options.clone().name("r"), move |e: ReminderDue| {
            let r = r.clone();
            async move { r.record(e.n) }
        })
        .handler_with(options.name("i"), move |e: InvoiceDue| {
            let i = i.clone();
            async move { i.record(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    let cluster = env.cluster.as_ref().unwrap();
    let (a, b) = (
        cluster.owner_of(ReminderDue::CHANNEL),
        cluster.owner_of(InvoiceDue::CHANNEL),
    );
    assert_ne!(
        cluster.slot_of(ReminderDue::CHANNEL),
        cluster.slot_of(InvoiceDue::CHANNEL)
    );
    println!("reminders on node {a}, invoices on node {b}");
    let scheduler = bus(&env.url, "scheduler").await;
    for n in 0..200 {
        let ahead = Duration::from_millis(2000 + 5 * n);
        scheduler
            .publish_after(ReminderDue { n }, ahead)
            .await
            .unwrap();
        scheduler
            .publish_after(InvoiceDue { n }, ahead)
            .await
            .unwrap();
    }
    replicated(a, ReminderDue::CHANNEL);
    env.cluster.as_mut().unwrap().kill_node(a);
    env.cluster
        .as_ref()
        .unwrap()
        .wait_promoted(a, Duration::from_secs(30));
    let all = || reminders.distinct() >= 200 && invoices.distinct() >= 200;
    assert!(
        wait_for(LIMIT, all).await,
        "{} reminders and {} invoices of 200 each arrived",
        reminders.distinct(),
        invoices.distinct()
    );
    scheduler
        .publish_after(ReminderDue { n: 999 }, Duration::ZERO)
        .await
        .unwrap();
    assert!(wait_for(LIMIT, || !reminders.times(999).is_empty()).await);
    assert_eq!(reminders.total(), 201, "each reminder once");
    assert_eq!(invoices.total(), 200, "each invoice once");
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_without_a_mover_leaves_the_moving_to_others() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let arrivals = Arrivals::default();
    let a = arrivals.clone();
    let quiet = RedisOptions::new().schedule_poll_interval(None);
    let consumer = EventBus::builder()
        .service("reminders")
        .redis_options(quiet.clone())
        .handler_with(
            HandlerOptions::new().name("remind"),
            move |e: ReminderDue| {
                let a = a.clone();
                async move { a.record(e.n) }
            },
        )
        .connect(&url)
        .await
        .unwrap();
    let r = consumer
        .publish_after(ReminderDue { n: 1 }, Duration::from_millis(10))
        .await
        .unwrap();
    let waiting = consumer
        .scheduled(r.schedule_id().queue(), 10)
        .await
        .unwrap();
    assert!(
        !wait_for(Duration::from_millis(500), || arrivals.total() > 0).await,
        "no mover runs, yet the event arrived"
    );
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let mover = bus(&url, "mover").await;
    assert!(
        wait_for(LIMIT, || arrivals.total() == 1).await,
        "another bus's mover sends it"
    );
    assert_eq!(mover.metrics().scheduled.fired, 1);
    assert_eq!(consumer.metrics().scheduled.fired, 0);
    let seen = mover.metrics().scheduled.queues;
    assert!(
        seen.iter().any(|q| q.queue == "events:reminder_due"),
        "{seen:?}"
    );
    consumer.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn memory_schedules_follow_tokios_clock() {
    let env = TestEnv::memory();
    let arrivals = Arrivals::default();
    let bus = consumer(&env.url, &arrivals).await;
    let half_hour = Duration::from_secs(30 * 60);
    let expiry = bus
        .publish_after(ReminderDue { n: 1 }, half_hour)
        .await
        .unwrap();
    bus.publish_after(ReminderDue { n: 2 }, 2 * half_hour)
        .await
        .unwrap();
    let kept = bus
        .publish_after(ReminderDue { n: 3 }, half_hour)
        .await
        .unwrap();
    assert!(bus.cancel_scheduled(kept.schedule_id()).await.unwrap());
    tokio::time::sleep(half_hour - Duration::from_secs(1)).await;
    assert_eq!(arrivals.total(), 0, "nothing before it is due");
    assert_eq!(
        bus.scheduled("events:reminder_due", 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let queues = bus.metrics().scheduled.queues;
    assert_eq!(queues.len(), 1, "{queues:?}");
    assert_eq!(
        (queues[0].queue.as_str(), queues[0].waiting),
        ("events:reminder_due", 2)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(wait_for(LIMIT, || arrivals.total() == 1).await);
    assert!(
        !bus.cancel_scheduled(expiry.schedule_id()).await.unwrap(),
        "it fired"
    );
    tokio::time::sleep(half_hour).await;
    assert!(wait_for(LIMIT, || arrivals.total() == 2).await);
    assert!(
        arrivals.times(3).is_empty(),
        "the cancelled one never comes"
    );
    let metrics = bus.metrics();
    assert_eq!(metrics.scheduled.fired, 2);
    assert_eq!(metrics.event_types["reminder_due"].scheduled, 3);
    bus.shutdown().await.unwrap();
}

#[test]
fn the_reminders_example_sends_what_is_due_and_not_what_was_cancelled() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    for url in [None, Some(server.url())] {
        let mut cmd = Command::new(eventbus_suite::examples::example_binary("reminders"));
        match &url {
            Some(url) => cmd.env("REDIS_URL", url),
            None => cmd.env_remove("REDIS_URL"),
        };
        let out = cmd.output().expect("run the example");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{url:?}: the example failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("cart 2 paid: expiry cancelled = true"),
            "{stdout}"
        );
        assert!(stdout.contains("cart 1 expired"), "{stdout}");
        assert!(!stdout.contains("cart 2 expired"), "{stdout}");
        assert!(stdout.contains("invoice INV-7 is due"), "{stdout}");
        assert!(
            stdout.contains("2 scheduled events sent when due"),
            "{stdout}"
        );
    }
}

/// A `reminders` role process, its stdout read line by line.
struct Role {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Role {
    fn start(url: &str, args: &[&str]) -> Role {
        let mut child = Command::new(eventbus_suite::examples::example_binary("reminders"))
            .args(args)
            .env("REDIS_URL", url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a reminders process");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(out).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Role { child, lines }
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn wait_line(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + LIMIT;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?} within {LIMIT:?}");
    }

    /// Every line before one that is `last`.
    fn lines_until(&self, last: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(line) if line == last => return out,
                Ok(line) => out.push(line),
                Err(_) => panic!("no line {last:?} within {LIMIT:?}"),
            }
        }
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The `cart_id` of every entry of `events:cart_expired`, in stream order.
fn carts_in_stream(server: &RedisServer) -> Vec<u64> {
    let out = server.cli(&["XRANGE", "events:cart_expired", "-", "+"]);
    out.lines()
        .filter_map(|l| l.split("\"cart_id\":").nth(1))
        .map(|t| t.split([',', '}']).next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn events_due_while_every_service_process_is_killed_fire_once_when_one_is_back() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    // Two services schedule 500 expiries each, due over the next 3 s, and are killed with -9
    // at once while the first are due.
    let a = Role::start(&url, &["schedule", "0", "500", "3000"]);
    let b = Role::start(&url, &["schedule", "500", "500", "3000"]);
    a.wait_line("scheduled");
    b.wait_line("scheduled");
    let fired_before = carts_in_stream(&server).len();
    a.kill();
    b.kill();
    assert!(
        fired_before < 1000,
        "all had fired before the kill: {fired_before}"
    );
    // A mover comes up, is killed with -9 while it moves, and another takes over.
    let mover = Role::start(&url, &["move"]);
    mover.wait_line("ready");
    mover.wait_line("fired 1");
    mover.kill();
    let mover = Role::start(&url, &["move"]);
    mover.wait_line("ready");
    let all = || carts_in_stream(&server).len() >= 1000;
    wait_until(LIMIT, "1000 expiries in the stream", all);
    let mut carts = carts_in_stream(&server);
    let in_stream = carts.len();
    carts.sort_unstable();
    carts.dedup();
    assert_eq!(
        (in_stream, carts.len()),
        (1000, 1000),
        "each expiry in the stream once"
    );
    assert_eq!(
        server.cli(&["ZCARD", "eventbus:schedule:{events:cart_expired}"]),
        "0"
    );
    println!("{fired_before} of 1000 had fired before every service process was killed");
    mover.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_bus_did_not_write_is_set_aside_and_the_queue_goes_on() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let arrivals = Arrivals::default();
    let consumer = consumer(&url, &arrivals).await;
    // Someone writes a record of their own into the queue, due at once.
    let (due, items) = (
        "eventbus:schedule:{events:reminder_due}",
        "eventbus:schedule:{events:reminder_due}:items",
    );
    server.cli(&["SADD", "eventbus:schedules", "events:reminder_due"]);
    server.cli(&["HSET", items, "garbage", "not a record"]);
    server.cli(&["ZADD", due, "0", "garbage"]);
    consumer
        .publish_after(ReminderDue { n: 1 }, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        wait_for(LIMIT, || arrivals.total() == 1).await,
        "the queue goes on"
    );
    let failed = server.cli(&["HGET", &format!("{due}:failed"), "garbage"]);
    assert!(failed.starts_with("MALFORMED"), "{failed}");
    assert_eq!(server.cli(&["ZCARD", due]), "0");
    assert_eq!(consumer.metrics().scheduled.errors, 0);
    consumer.shutdown().await.unwrap();
}
