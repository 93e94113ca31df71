//! Durable entries on their way to the dead letters, on a real redis-server: an entry is
//! acknowledged only once its dead letter is stored; poison is reported; entries that can never
//! be handled go to the dead letters at once, under the stream's own type; durable handlers take
//! their `dataversion` only, as pub/sub handlers do.

use std::sync::Arc;
use std::time::Duration;

use eventbus::{DurableOptions, Event, EventBus, Failure, HandlerOptions, RetryPolicy};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "invoice_due", durable)]
struct InvoiceDue {
    invoice: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "rate_set", version = 2, durable)]
struct RateSet {
    rate: u64,
}

const LIMIT: Duration = Duration::from_secs(30);
const STREAM: &str = "events:invoice_due";
const DEAD: &str = "eventbus:dead:invoice_due";

/// Every failure the bus reports, as text and as the value.
#[derive(Clone)]
struct Reported(Seen<Failure>);

impl Reported {
    fn new() -> Self {
        Reported(Seen::new())
    }

    fn texts(&self) -> Vec<String> {
        self.0.snapshot().iter().map(ToString::to_string).collect()
    }
    fn count(&self, what: impl Fn(&Failure) -> bool) -> usize {
        self.0.snapshot().iter().filter(|f| what(f)).count()
    }
}

/// The number of entries pending in the group, as `XPENDING` says.
fn pending(server: &RedisServer, group: &str) -> u64 {
    let summary = server.cli(&["XPENDING", STREAM, group]);
    summary
        .lines()
        .next()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap()
}

fn xlen(server: &RedisServer, key: &str) -> u64 {
    server.cli(&["XLEN", key]).parse().unwrap()
}

/// `XADD events:invoice_due * <field> <value>`, as another writer would.
fn append(server: &RedisServer, field: &str, value: &str) -> String {
    server.cli(&["XADD", STREAM, "*", field, value])
}

fn envelope(event_type: &str, data: &str, version: Option<&str>) -> String {
    let version = version.map_or(String::new(), |v| format!(r#","dataversion":"{v}""#));
    format!(
        r#"{{"specversion":"1.0","id":"{}","source":"elsewhere","type":"{event_type}","data":{data}{version}}}"#,
        fastrand_id()
    )
}

fn fastrand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("id-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// At `maxmemory` the dead letter's `XADD` fails while `XACK` would not: the entry stays
/// pending (never acknowledged silently) and the server's reason is reported; once memory is
/// freed, a later delivery stores it and acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_stays_pending_until_its_dead_letter_is_stored() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let gate = Arc::new(Semaphore::new(0));
    let (g, reported) = (gate.clone(), Reported::new());
    let r = reported.clone();
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().no_timeout().durable(
                DurableOptions::new()
                    .group("billing:remind")
                    .claim_idle(Duration::from_millis(300))
                    .max_deliveries(3),
            ),
            move |_: InvoiceDue| {
                let g = g.clone();
                async move {
                    g.acquire().await.unwrap().forget();
                    anyhow::bail!("the ledger is closed")
                }
            },
        )
        .on_error(move |f| r.0.push(f.clone()))
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    bus.publish(InvoiceDue { invoice: 1 }).await.unwrap();
    assert!(wait_for(LIMIT, || bus.metrics().handlers[0].in_flight == 1).await);

    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    gate.add_permits(1000);
    let refused =
        |f: &Failure| matches!(f, Failure::DeadLetter { error, .. } if error.contains("OOM"));
    assert!(
        wait_for(LIMIT, || reported.count(refused) >= 1).await,
        "the store's refusal is reported with the server's reason: {:#?}",
        reported.texts()
    );
    // Delivered again (claimed back after `claim_idle`), past `max_deliveries` (poison) too:
    // never acknowledged while its dead letter cannot be stored.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        assert_eq!(
            pending(&server, "billing:remind"),
            1,
            "{:#?}",
            reported.texts()
        );
        assert_eq!(xlen(&server, DEAD), 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reported.count(refused) >= 2,
        "it was delivered again: {:#?}",
        reported.texts()
    );

    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert!(
        wait_for(LIMIT, || xlen(&server, DEAD) == 1
            && pending(&server, "billing:remind") == 0)
        .await,
        "stored on a later delivery, then acknowledged: {:#?}",
        reported.texts()
    );
    assert_eq!(bus.metrics().handlers[0].dead_lettered, 1);
    bus.shutdown().await.unwrap();
}

/// An entry delivered more than `max_deliveries` times is poison: dead-lettered without another
/// run, and reported to the error hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_reported() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let durable = DurableOptions::new()
        .group("billing:remind")
        .claim_idle(Duration::from_millis(200))
        .max_deliveries(1);
    // A consumer takes the entry and dies with it.
    server.cli(&[
        "XGROUP",
        "CREATE",
        STREAM,
        "billing:remind",
        "$",
        "MKSTREAM",
    ]);
    append(
        &server,
        "envelope",
        &envelope("invoice_due", r#"{"invoice":7}"#, None),
    );
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "billing:remind",
        "gone",
        "COUNT",
        "1",
        "STREAMS",
        STREAM,
        ">",
    ]);

    let (reported, runs) = (Reported::new(), Seen::new());
    let (r, h) = (reported.clone(), runs.clone());
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().durable(durable),
            move |e: InvoiceDue| {
                let h = h.clone();
                async move { h.push(e.invoice) }
            },
        )
        .on_error(move |f| r.0.push(f.clone()))
        .connect(&server.url())
        .await
        .unwrap();
    assert!(
        wait_for(LIMIT, || xlen(&server, DEAD) == 1).await,
        "{:#?}",
        reported.texts()
    );
    assert!(
        wait_for(LIMIT, || reported.count(|f| matches!(
            f,
            Failure::Poison {
                deliveries: 2,
                max_deliveries: 1,
                ..
            }
        )) == 1)
        .await,
        "poison reaches the error hook: {:#?}",
        reported.texts()
    );
    assert!(
        reported.texts()[0].contains("poison"),
        "{:#?}",
        reported.texts()
    );
    assert!(runs.is_empty(), "the handler did not run again");
    assert!(wait_for(LIMIT, || pending(&server, "billing:remind") == 0).await);
    bus.shutdown().await.unwrap();
}

/// Entries that can never be handled (not JSON, no `envelope` field, data of the wrong shape,
/// larger than `max_message_size`) go to the dead letters at once with the reason, counted as
/// decode errors, not handler failures: a concurrency-1 handler with a long retry policy is not
/// held up, and the next valid entry is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_entries_are_dead_lettered_at_once() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let (reported, handled) = (Reported::new(), Seen::new());
    let (r, h) = (reported.clone(), handled.clone());
    let bus = EventBus::builder()
        .service("billing")
        .max_message_size(1024)
        .handler_with(
            HandlerOptions::new().name("remind").retry(
                RetryPolicy::attempts(5).backoff(Duration::from_secs(2), Duration::from_secs(2)),
            ),
            move |e: InvoiceDue| {
                let h = h.clone();
                async move { h.push(e.invoice) }
            },
        )
        .on_error(move |f| r.0.push(f.clone()))
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    append(&server, "envelope", "not json at all");
    append(
        &server,
        "body",
        &envelope("invoice_due", r#"{"invoice":1}"#, None),
    );
    append(
        &server,
        "envelope",
        &envelope("invoice_due", r#"{"invoice":"one"}"#, None),
    );
    append(&server, "envelope", &"x".repeat(4096));
    let started = tokio::time::Instant::now();
    bus.publish(InvoiceDue { invoice: 2 }).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || handled.snapshot() == vec![2]).await,
        "{:#?}",
        reported.texts()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no retries: {:?}",
        started.elapsed()
    );
    assert!(wait_for(LIMIT, || xlen(&server, DEAD) == 4).await);
    assert!(wait_for(LIMIT, || pending(&server, "billing:remind") == 0).await);

    let m = bus.metrics();
    let remind = m.handler("remind").unwrap();
    assert_eq!(
        (
            remind.decode_errors,
            remind.dead_lettered,
            remind.failed,
            remind.handled
        ),
        (4, 4, 0, 1),
        "{remind:?}"
    );
    assert_eq!(m.decode_errors, 4);
    let decode = reported.count(|f| matches!(f, Failure::Decode(d) if d.entry_id.is_some()));
    assert_eq!(decode, 4, "{:#?}", reported.texts());
    assert_eq!(
        reported.count(|f| matches!(f, Failure::Handler(_))),
        0,
        "{:#?}",
        reported.texts()
    );
    let letters = bus.dead_letters("invoice_due", 10).await.unwrap();
    let errors: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    assert!(errors[0].contains("not JSON"), "{errors:#?}");
    assert!(
        errors[1].contains("not JSON"),
        "no `envelope` field: {errors:#?}"
    );
    assert!(errors[2].contains("does not fit"), "{errors:#?}");
    assert!(errors[3].contains("too large"), "{errors:#?}");
    assert_eq!(
        letters[3].payload.len(),
        4096,
        "under 4 KiB, all of it is kept"
    );
    bus.shutdown().await.unwrap();
}

/// Any writer may append an envelope of another type to a stream: it is dead-lettered under
/// the stream's own type with the reason, and no dead-letter stream of its type appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_of_another_type_is_dead_lettered_under_the_stream_s_type() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let handled = Seen::new();
    let h = handled.clone();
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new().name("remind"),
            move |e: InvoiceDue| {
                let h = h.clone();
                async move { h.push(e.invoice) }
            },
        )
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    append(
        &server,
        "envelope",
        &envelope("anything:at:all", r#"{"invoice":1}"#, None),
    );
    bus.publish(InvoiceDue { invoice: 2 }).await.unwrap();
    assert!(wait_for(LIMIT, || handled.snapshot() == vec![2]).await);
    assert!(wait_for(LIMIT, || xlen(&server, DEAD) == 1).await);
    assert_eq!(
        server.cli(&["EXISTS", "eventbus:dead:anything:at:all"]),
        "0"
    );
    let letters = bus.dead_letters("invoice_due", 10).await.unwrap();
    assert!(
        letters[0]
            .error
            .contains("expected `invoice_due`, found `anything:at:all`"),
        "{}",
        letters[0].error
    );
    let remind = bus.metrics().handler("remind").cloned().unwrap();
    assert_eq!((remind.decode_errors, remind.failed), (1, 0), "{remind:?}");
    assert!(wait_for(LIMIT, || pending(&server, "billing:remind") == 0).await);
    bus.shutdown().await.unwrap();
}

/// A durable handler takes the envelopes of its `dataversion` (and those stating none), and
/// skips the others, acknowledged and counted, as a pub/sub handler does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_handlers_take_their_dataversion_only() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let handled = Seen::new();
    let h = handled.clone();
    let bus = EventBus::builder()
        .service("pricing")
        .handler_with(HandlerOptions::new().name("apply"), move |e: RateSet| {
            let h = h.clone();
            async move { h.push(e.rate) }
        })
        .connect(&server.url())
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    let add = |version: Option<&str>, rate: u64| {
        let payload = envelope("rate_set", &format!(r#"{{"rate":{rate}}}"#), version);
        server.cli(&["XADD", "events:rate_set", "*", "envelope", &payload]);
    };
    add(Some("1"), 1);
    add(Some("2"), 2);
    add(None, 3);
    add(Some("3"), 4);
    assert!(wait_for(LIMIT, || handled.len() == 2).await);
    let apply = || bus.metrics().handler("apply").cloned().unwrap();
    assert!(
        wait_for(LIMIT, || apply().skipped == 2).await,
        "{:?}",
        apply()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handled.snapshot(), vec![2, 3]);
    let a = apply();
    assert_eq!((a.handled, a.failed, a.dead_lettered), (2, 0, 0), "{a:?}");
    let pending = server.cli(&["XPENDING", "events:rate_set", "pricing:apply"]);
    assert!(
        pending.starts_with('0'),
        "skipped ones are acknowledged: {pending}"
    );
    bus.shutdown().await.unwrap();
}
