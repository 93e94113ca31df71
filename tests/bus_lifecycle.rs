//! Shutdown, streams, dropped buses and foreign runtimes: the bus's life cycle, on the
//! in-process transport and on a real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::{
    Envelope, Event, EventBus, HandlerOptions, PublishErrorKind, PublishOptions, RetryPolicy,
    SubscribeErrorKind,
};
use eventbus_suite::{Seen, TestEnv, on_both_transports, wait_for};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job_started")]
struct JobStarted {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job_followed")]
struct JobFollowed {
    n: u64,
}

const WAIT: Duration = Duration::from_secs(10);

/// Dead letters and follow-up publishes made while shutdown drains the handlers are kept:
/// the transport closes only after the drain.
async fn shutdown_drains_before_closing(env: TestEnv) {
    let follow_ups = Seen::new();
    let f = follow_ups.clone();
    let watcher = EventBus::builder()
        .handler(move |e: JobFollowed| {
            let f = f.clone();
            async move { f.push(e.n) }
        })
        .connect(&env.url)
        .await
        .unwrap();
    watcher.ready(WAIT).await.unwrap();
    let bus = EventBus::builder()
        .handler_with(
            HandlerOptions::new().name("failing").retry(
                RetryPolicy::attempts(2)
                    .backoff(Duration::from_millis(1), Duration::from_millis(2)),
            ),
            |_: JobStarted| async move { Err::<(), _>(std::io::Error::other("always fails")) },
        )
        .handler_with(
            HandlerOptions::new().name("follower"),
            |e: Envelope<JobStarted>, bus: EventBus| async move {
                let next = JobFollowed { n: e.data().n };
                bus.publish_with(next, PublishOptions::caused_by(&e))
                    .await
                    .map(|_| ())
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    for n in 0..3 {
        bus.publish(JobStarted { n }).await.unwrap();
    }
    let report = bus.shutdown().await.unwrap();
    assert_eq!(report.unprocessed, 0);
    let m = bus.metrics();
    let failing = m.handler("failing").unwrap();
    let follower = m.handler("follower").unwrap();
    assert_eq!((failing.failed, failing.dead_lettered), (3, 3), "{m:#?}");
    assert_eq!((follower.handled, follower.failed), (3, 0), "{m:#?}");
    assert!(
        wait_for(WAIT, || follow_ups.len() == 3).await,
        "every follow-up published while draining arrived: {:?}",
        follow_ups.snapshot()
    );
    let letters = watcher.dead_letters("job_started", 10).await.unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    watcher.shutdown().await.unwrap();
}

/// A stream ends after shutdown, having yielded what it held; one held but never read does
/// not hold shutdown up.
async fn streams_end_at_shutdown(env: TestEnv) {
    let bus = EventBus::builder()
        .shutdown_timeout(Duration::from_secs(30))
        .connect(&env.url)
        .await
        .unwrap();
    let mut read = bus.stream::<JobStarted>().await.unwrap();
    let unread = bus.stream::<JobStarted>().await.unwrap();
    for n in 0..20 {
        bus.publish(JobStarted { n }).await.unwrap();
    }
    assert!(
        wait_for(WAIT, || bus
            .metrics()
            .handlers
            .iter()
            .all(|h| h.received == 20))
        .await
    );
    let started = Instant::now();
    let report = bus.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.unprocessed, 0);
    let mut got = Vec::new();
    while let Some(e) = tokio::time::timeout(WAIT, read.next())
        .await
        .expect("the stream ends")
    {
        got.push(e.data().n);
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    drop(unread);
}

/// `shutdown()` from inside a handler returns once every other run is done; concurrent calls
/// all return the same outcome when the drain is done.
async fn shutdown_from_a_handler_and_concurrently(env: TestEnv) {
    let done = Arc::new(AtomicU64::new(0));
    let reports = Seen::new();
    let (d, r) = (done.clone(), reports.clone());
    let bus = EventBus::builder()
        .shutdown_timeout(Duration::from_secs(30))
        .handler_with(HandlerOptions::new().name("slow"), move |_: JobFollowed| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .handler_with(
            HandlerOptions::new().name("stopper"),
            move |_: JobStarted, bus: EventBus| {
                let r = r.clone();
                async move {
                    let started = Instant::now();
                    let report = bus.shutdown().await;
                    r.push((started.elapsed(), report.map(|r| r.unprocessed).ok()));
                }
            },
        )
        .connect(&env.url)
        .await
        .unwrap();
    bus.publish(JobFollowed { n: 1 }).await.unwrap();
    assert!(
        wait_for(WAIT, || bus.metrics().handler("slow").unwrap().in_flight
            == 1)
        .await
    );
    bus.publish(JobStarted { n: 1 }).await.unwrap();
    assert!(
        wait_for(WAIT, || reports.len() == 1).await,
        "the handler's shutdown returned"
    );
    let (took, unprocessed) = reports.snapshot()[0];
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(unprocessed, Some(0));
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the other handler's run finished first"
    );
    let (a, b) = tokio::join!(bus.shutdown(), bus.shutdown());
    assert_eq!(a.unwrap(), b.unwrap(), "every caller gets the same outcome");
}

/// Subscribing during or after shutdown is refused with `Closed`.
async fn subscribing_after_shutdown_is_refused(env: TestEnv) {
    let bus = EventBus::builder().connect(&env.url).await.unwrap();
    bus.shutdown().await.unwrap();
    let err = bus.subscribe(|_: JobStarted| async {}).await.unwrap_err();
    assert_eq!(err.kind(), SubscribeErrorKind::Closed, "{err}");
    let err = bus.publish(JobStarted { n: 0 }).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Closed, "{err}");
}

on_both_transports!(
    shutdown_drains_before_closing,
    streams_end_at_shutdown,
    shutdown_from_a_handler_and_concurrently,
    subscribing_after_shutdown_is_refused,
);

/// A bus whose creating runtime shut down fails at once, saying why.
#[test]
fn a_bus_from_a_runtime_that_shut_down_says_so() {
    let creator = tokio::runtime::Runtime::new().unwrap();
    let bus = creator.block_on(async {
        EventBus::builder()
            .handler(|_: JobStarted| async {})
            .connect("memory://")
            .await
            .unwrap()
    });
    drop(creator);
    let other = tokio::runtime::Runtime::new().unwrap();
    other.block_on(async {
        let started = Instant::now();
        let err = bus.publish(JobStarted { n: 1 }).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(err.kind(), PublishErrorKind::Closed, "{err}");
        assert!(
            err.to_string()
                .contains("runtime that created this bus has shut down"),
            "{err}"
        );
        let err = bus.subscribe(|_: JobFollowed| async {}).await.unwrap_err();
        assert_eq!(err.kind(), SubscribeErrorKind::Closed, "{err}");
    });
}

/// Dropping the last handle without `shutdown()` says how much queued work it discarded.
#[test]
fn dropping_the_last_handle_logs_what_was_discarded() {
    let logs = Seen::<String>::new();
    let writer = {
        let logs = logs.clone();
        move || LogWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let g = gate.clone();
        let bus = EventBus::builder()
            .handler(move |_: JobStarted| {
                let g = g.clone();
                async move {
                    let _ = g.acquire().await;
                }
            })
            .connect("memory://")
            .await
            .unwrap();
        for n in 0..20 {
            bus.publish(JobStarted { n }).await.unwrap();
        }
        assert!(wait_for(WAIT, || bus.metrics().handlers[0].in_flight == 1).await);
        drop(bus);
    });
    let text = logs.snapshot().concat();
    assert!(text.contains("discarded=20"), "{text}");
    assert!(text.contains("without shutdown()"), "{text}");
}

struct LogWriter(Seen<String>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A bus whose creating runtime is alive but idle (nothing drives it) does not hang a publish
/// made from another runtime: it fails with `Timeout` after the publish deadline, saying why.
#[test]
fn a_publish_through_an_idle_runtime_times_out() {
    let Some(server) = eventbus_suite::redis_server::RedisServer::start_or_skip() else {
        return;
    };
    let creator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = eventbus::redis::RedisOptions::default()
        .publish_deadline(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500));
    let bus = creator.block_on(async {
        EventBus::builder()
            .redis_options(options)
            .connect(&server.url())
            .await
            .unwrap()
    });
    // `creator` stays alive, but nothing runs it from here on.
    let other = tokio::runtime::Runtime::new().unwrap();
    other.block_on(async {
        let started = Instant::now();
        let err = bus.publish(JobStarted { n: 1 }).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(err.kind(), PublishErrorKind::Timeout, "{err}");
        assert!(
            err.to_string().contains("runtime that created the bus"),
            "{err}"
        );
    });
    drop(bus);
    drop(creator);
}
