//! A stalled handler must not make Redis disconnect the subscriber (output buffer limit) nor
//! let memory grow without bound: its queue overflows by its policy, the drops are counted,
//! and the other handler keeps up with every event.

use std::time::Duration;

use eventbus::{ConnectionEvent, Event, EventBus, HandlerOptions, Overflow};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Reading {
    sensor: u32,
    seq: u64,
    note: String,
}

/// The process's resident memory in KiB (`VmRSS` in `/proc/self/status`), or `None` off
/// Linux, where the memory check is skipped with a message. On Linux a value that cannot be
/// read fails the test: a check that reads 0 would pass whatever the memory did.
fn rss_kib() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        eprintln!("skipping the memory check: resident memory is read from /proc (Linux only)");
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|e| panic!("could not read /proc/self/status: {e}"));
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmRSS in kB in /proc/self/status:\n{status}"));
    assert!(kib > 0, "VmRSS reads 0 kB:\n{status}");
    Some(kib)
}

fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handler_costs_nothing_but_its_own_drops() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    // A tight pub/sub output buffer: a subscriber that stopped reading would be cut off fast.
    server.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 2mb 1mb 5",
    ]);
    const N: u64 = 100_000;
    const STALLED_CAPACITY: usize = 1_000;
    let fast = Seen::new();
    let f = fast.clone();
    let subscriber = EventBus::builder()
        .service("sink")
        .handler_with(
            HandlerOptions::new()
                .name("stalled")
                .no_timeout()
                .queue_capacity(STALLED_CAPACITY)
                .overflow(Overflow::DropNewest),
            |_: Reading| std::future::pending::<()>(),
        )
        .handler_with(
            HandlerOptions::new()
                .name("fast")
                .queue_capacity(N as usize),
            move |r: Reading| {
                let f = f.clone();
                async move { f.push(r.seq) }
            },
        )
        .connect(&server.url())
        .await
        .unwrap();
    let mut connection_events = subscriber.connection_events();
    let publisher = EventBus::builder().connect(&server.url()).await.unwrap();
    let rss_before = rss_kib();

    let note = "x".repeat(120);
    let mut next = 0u64;
    while next < N {
        let batch: Vec<_> = (next..(next + 256).min(N))
            .map(|seq| {
                publisher.publish(Reading {
                    sensor: 7,
                    seq,
                    note: note.clone(),
                })
            })
            .collect();
        for r in futures_util::future::join_all(batch).await {
            assert_eq!(r.unwrap().receivers, 1);
        }
        next = (next + 256).min(N);
    }
    assert!(
        wait_for(Duration::from_secs(120), || fast.len() == N as usize).await,
        "fast handler got {} of {N}",
        fast.len()
    );
    // Publishes were concurrent, so arrival order is not publish order; none is lost or doubled.
    let mut seqs = fast.snapshot();
    seqs.sort_unstable();
    assert!(seqs.iter().copied().eq(0..N), "every event exactly once");

    let m = subscriber.metrics();
    let stalled = m.handler("stalled").unwrap();
    assert_eq!(stalled.in_flight, 1);
    assert_eq!(stalled.queue_depth, STALLED_CAPACITY as u64);
    assert_eq!(stalled.dropped, N - 1 - STALLED_CAPACITY as u64);
    assert_eq!(m.handler("fast").unwrap().dropped, 0);
    assert_eq!(m.reconnects, 0);

    if let (Some(before), Some(after)) = (rss_before, rss_kib()) {
        let growth_mib = after.saturating_sub(before) / 1024;
        assert!(growth_mib < 256, "memory grew by {growth_mib} MiB");
    }

    // The server never cut the subscriber off.
    let stats = server.cli(&["INFO", "stats"]);
    match info_field(&stats, "client_output_buffer_limit_disconnections") {
        Some(n) => assert_eq!(n, 0, "{stats}"),
        None => eprintln!(
            "this redis-server does not count output buffer disconnections (Redis 7 does); \
             the client list and log checks below still apply"
        ),
    }
    let clients = server.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert_eq!(
        clients.lines().count(),
        1,
        "the subscriber is still connected: {clients}"
    );
    assert!(
        !server
            .log()
            .contains("scheduled to be closed ASAP for overcoming of output buffer limits")
    );
    while let Ok(event) = connection_events.try_recv() {
        assert!(
            !matches!(event, ConnectionEvent::Disconnected { .. }),
            "unexpected {event}"
        );
    }
    let _ = subscriber.shutdown().await;
    publisher.shutdown().await.unwrap();
}
