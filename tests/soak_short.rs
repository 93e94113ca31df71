//! A short soak: the `soak` example for about a minute with faults (seed 42), through its own
//! redis-server and proxy. It must exit with 0 and print a table whose every row holds.

use std::process::Stdio;
use std::time::Duration;

use eventbus_suite::examples::example_binary;
use eventbus_suite::redis_server::RedisServer;
use tokio::process::Command;

/// A minute of load and the drain, with room for a slow machine.
const LIMIT: Duration = Duration::from_secs(360);

/// The checks every run's table has rows for.
const CHECKS: [&str; 8] = [
    "durable: every Ok publish handled",
    "durable: no duplicate run of an entry whose consumer never died",
    "durable: nothing left pending",
    "durable: no entry dead-lettered without a failed run",
    "pub/sub: every loss in a gap or dropped",
    "metrics agree with own counts",
    "resources: RSS growth after warm-up",
    "resources: Redis client connections",
];

/// The rows of the PostgreSQL-backed orders pair, there when PostgreSQL is installed.
const ORDER_CHECKS: [&str; 3] = [
    "orders: every committed order charged exactly once",
    "orders: nothing without its order",
    "orders: the outbox drained, nothing set aside",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_chaos_breaks_no_invariant() {
    if RedisServer::start_or_skip().is_none() {
        return;
    }
    let run = Command::new(example_binary("soak"))
        .args(["--minutes", "1", "--chaos", "--seed", "42", "--rate", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the soak harness");
    let output = tokio::time::timeout(LIMIT, run.wait_with_output())
        .await
        .expect("the soak run did not finish in time")
        .expect("wait for the soak run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "soak exited with {}:\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    let rows = table_rows(&stdout);
    let with_postgres = eventbus_suite::postgres::Postgres::start_or_skip().is_some();
    let orders = ORDER_CHECKS.iter().filter(|_| with_postgres);
    for check in CHECKS.iter().chain(orders) {
        assert!(
            rows.iter().any(|r| r[0] == *check),
            "no row for `{check}`:\n{stdout}"
        );
    }
    let broken: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r.last().is_none_or(|c| c != "ok"))
        .collect();
    assert!(broken.is_empty(), "broken rows {broken:?}:\n{stdout}");
    assert!(
        stdout.contains(&format!("soak: all {} invariants met", rows.len())),
        "{stdout}"
    );
}

/// The table's data rows, as trimmed cells (the header and the rule left out).
fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| check "))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}
