//! Option values at their extremes against a real redis-server (and the in-process hub where
//! the transport does not matter): `Duration::MAX` deadlines work, impossible values are
//! `Config` errors, `usize::MAX` concurrency runs the handler, and `max_in_flight` bounds the
//! publishes queued or on the wire, failing the rest with a timeout when the server hangs.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{ConnectErrorKind, Event, EventBus, HandlerOptions, PublishErrorKind};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::wait_for;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "limit_ping")]
struct LimitPing {
    n: u64,
}

/// Every test body runs under this bound, so nothing hangs.
async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("the test did not finish within 60s");
}

/// A bus whose `LimitPing` handler counts what it receives.
async fn counting_bus(
    url: &str,
    redis: RedisOptions,
    handler: HandlerOptions,
) -> (EventBus, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let bus = EventBus::builder()
        .redis_options(redis)
        .handler_with(handler, move |_: LimitPing| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::Relaxed);
            }
        })
        .connect(url)
        .await
        .expect("connect");
    (bus, received)
}

fn publish_calls(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("cmdstat_publish:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_max_deadlines_publish_and_deliver() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let options = RedisOptions::new()
            .connect_timeout(Duration::MAX)
            .response_timeout(Duration::MAX)
            .publish_deadline(Duration::MAX)
            .reconnect_backoff(Duration::MAX, Duration::MAX)
            .watchdog_interval(Some(Duration::MAX));
        let handler = HandlerOptions::new()
            .timeout(Duration::MAX)
            .concurrency(usize::MAX);
        let (bus, received) = counting_bus(&server.url(), options, handler).await;
        for n in 0..10 {
            let receipt = bus.publish(LimitPing { n }).await.expect("publish");
            assert_eq!(receipt.receivers, 1);
        }
        assert!(
            wait_for(Duration::from_secs(10), || received.load(Ordering::Relaxed)
                == 10)
            .await,
            "received {} of 10",
            received.load(Ordering::Relaxed)
        );
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usize_max_concurrency_runs_the_handler_in_memory() {
    bounded(async {
        let handler = HandlerOptions::new()
            .concurrency(usize::MAX)
            .timeout(Duration::MAX);
        let (bus, received) = counting_bus("memory://", RedisOptions::new(), handler).await;
        for n in 0..100 {
            bus.publish(LimitPing { n }).await.expect("publish");
        }
        assert!(
            wait_for(Duration::from_secs(10), || received.load(Ordering::Relaxed)
                == 100)
            .await,
            "received {} of 100",
            received.load(Ordering::Relaxed)
        );
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn impossible_redis_options_are_config_errors_naming_each() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    bounded(async {
        let options = RedisOptions::new()
            .connect_timeout(Duration::ZERO)
            .response_timeout(Duration::ZERO)
            .publish_deadline(Duration::ZERO)
            .max_reconnect_attempts(Some(0))
            .dead_letter_max_len(Some(0));
        let err = EventBus::builder()
            .redis_options(options)
            .connect(&server.url())
            .await
            .expect_err("impossible options");
        assert_eq!(err.kind(), ConnectErrorKind::Config, "{err}");
        let text = err.to_string();
        for part in [
            "invalid Redis options",
            "connect timeout of zero",
            "response timeout of zero",
            "publish deadline of zero",
            "max_reconnect_attempts(Some(0))",
            "dead_letter_max_len(Some(0))",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_publishes_with_a_small_max_in_flight_all_succeed() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    const N: u64 = 2000;
    bounded(async {
        let options = RedisOptions::new()
            .max_in_flight(4)
            .response_timeout(Duration::from_secs(10))
            .publish_deadline(Duration::from_secs(30));
        let handler = HandlerOptions::new().queue_capacity(N as usize);
        let (bus, received) = counting_bus(&server.url(), options, handler).await;
        let publishes: Vec<_> = (0..N)
            .map(|n| {
                let bus = bus.clone();
                tokio::spawn(async move { bus.publish(LimitPing { n }).await })
            })
            .collect();
        for p in publishes {
            let receipt = p.await.unwrap().expect("publish");
            assert_eq!(receipt.receivers, 1);
        }
        assert!(
            wait_for(Duration::from_secs(20), || received.load(Ordering::Relaxed)
                == N)
            .await,
            "received {} of {N}",
            received.load(Ordering::Relaxed)
        );
        assert_eq!(publish_calls(&server), N);
        bus.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_a_hung_server_time_out_instead_of_piling_up() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    const N: u64 = 200;
    const MAX_IN_FLIGHT: u64 = 4;
    let deadline = Duration::from_millis(400);
    let response_timeout = Duration::from_secs(2);
    bounded(async {
        let options = RedisOptions::new()
            .max_in_flight(MAX_IN_FLIGHT as usize)
            .publish_deadline(deadline)
            .response_timeout(response_timeout)
            .watchdog_interval(None);
        let bus = EventBus::builder()
            .redis_options(options)
            .connect(&server.url())
            .await
            .expect("connect");
        server.pause_process();
        let started = Instant::now();
        let publishes: Vec<_> = (0..N)
            .map(|n| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    let result = bus.publish(LimitPing { n }).await;
                    (result, started.elapsed())
                })
            })
            .collect();
        let mut waited_for_turn = 0;
        for p in publishes {
            let (result, took) = p.await.unwrap();
            let err = result.expect_err("the server is stopped");
            assert_eq!(err.kind(), PublishErrorKind::Timeout, "{err}");
            // Its deadline plus one response timeout, and room for a loaded machine.
            assert!(
                took < deadline + response_timeout + Duration::from_secs(2),
                "took {took:?}: {err}"
            );
            let text = err.to_string();
            if text.contains("for its turn") {
                waited_for_turn += 1;
                assert!(text.contains("max_in_flight"), "{text}");
            } else {
                assert!(text.contains("did not answer within"), "{text}");
            }
        }
        assert!(
            waited_for_turn >= N - MAX_IN_FLIGHT,
            "only {waited_for_turn} of {N} waited for their turn"
        );
        server.resume_process();
        // The ping is answered after every publish written before it on that connection.
        bus.ping().await.expect("ping after resume");
        let sent = publish_calls(&server);
        assert!(
            sent <= MAX_IN_FLIGHT,
            "{sent} publishes reached the server, more than max_in_flight"
        );
        bus.shutdown().await.unwrap();
    })
    .await;
}
