//! The benchmark harness's short run (`bench --quick`) in the suite: it starts its own
//! redis-server and Redis Cluster, measures every row, loses nothing, and prints the whole
//! table. Its figures are not judged here (a debug build on a shared machine); `cargo run
//! --release --example bench` is the measurement.

use std::process::Command;

use eventbus_suite::examples::example_binary;
use eventbus_suite::redis_server::RedisServer;

#[test]
fn the_quick_bench_prints_every_row() {
    // The bench starts its own servers; this only checks the binary is there to start.
    if RedisServer::start_or_skip().is_none() {
        return;
    }
    let out = Command::new(example_binary("bench"))
        .arg("--quick")
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench --quick failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for measure in [
        "| publish, 16 in flight",
        "| end to end, publisher process → bus",
        "| latency p50, 1 in flight",
        "| latency p99 at ",
        "| latency p50/p99/p99.9 at 1000/s",
        "| subscriber CPU per event",
        "| memory:// publish → 4 handlers",
        "| latency p50/p99/p99.9 at 20000/s",
        "| no-op handler beside a stalled one",
        "| durable publish, 16 in flight",
        "| durable consume + ack, one consumer",
        "| durable latency p50 / p99, 1 in flight",
        "| cluster: publish, 16 in flight",
        "| outbox publish, transaction of 1",
        "| outbox publish_all, transaction of 100",
        "| outbox relay, committed rows to a stream",
        "| outbox publish + commit to handler, 1000/s",
        "| inbox handler, one row written per event",
        "| cluster: end to end",
        "|   cluster subscriber alone",
        "| subscriber CPU per event (3 rounds)",
        "|   raw subscriber + the wire work",
        "|   subscriber written by hand",
        "| latency p99 / p99.9 at ",
    ] {
        assert!(stdout.contains(measure), "no row {measure:?}:\n{stdout}");
    }
    assert!(stdout.contains("| 0 (all runs of ours)"), "{stdout}");
    // Each steady-load row has its raw redis-rs baseline at the same rate (the receive-side
    // rounds' row too).
    assert_eq!(
        stdout.matches("R raw redis-rs pair:").count(),
        4,
        "{stdout}"
    );
}
