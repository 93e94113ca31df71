//! Running the built `eventbus` binary against a throwaway redis-server.

#![allow(dead_code)] // each test file uses part of it

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use eventbus_suite::redis_server::RedisServer;

/// How long any one wait in these tests may take.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// A server of its own, or `None` when redis-server is missing outside CI (in CI a missing
/// server is a failure, as the shared helper decides).
pub(crate) fn server() -> Option<RedisServer> {
    RedisServer::start_or_skip()
}

/// The binary with `--url` and no inherited `EVENTBUS_URL` or colour settings.
pub(crate) fn eventbus(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
    cmd.arg("--url")
        .arg(url)
        .args(args)
        .env_remove("EVENTBUS_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs the binary to its end (at most [`LIMIT`]) and returns what it printed.
pub(crate) fn run(url: &str, args: &[&str]) -> Output {
    let child = eventbus(url, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running eventbus");
    finish(child)
}

/// Starts the binary in the background, its output piped.
pub(crate) fn spawn(url: &str, args: &[&str]) -> Child {
    eventbus(url, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running eventbus")
}

/// Waits for a started binary to end (killing it after [`LIMIT`]) and returns its output.
pub(crate) fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("waiting for eventbus").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting output");
            panic!(
                "eventbus did not end within {LIMIT:?}; stdout: {} stderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collecting output")
}

/// Polls `check` until it holds; panics with `what` after [`LIMIT`].
pub(crate) fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `channel` has `n` subscribers (`PUBSUB NUMSUB`).
pub(crate) fn wait_subscribed(server: &RedisServer, channel: &str, n: u64) {
    wait_until(&format!("{n} subscribers on {channel}"), || {
        let reply = server.cli(&["PUBSUB", "NUMSUB", channel]);
        reply
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            == Some(n)
    });
}

/// Waits until the server has `n` pattern subscriptions (`PUBSUB NUMPAT`).
pub(crate) fn wait_patterns(server: &RedisServer, n: u64) {
    wait_until(&format!("{n} pattern subscriptions"), || {
        server.cli(&["PUBSUB", "NUMPAT"]).trim().parse::<u64>().ok() == Some(n)
    });
}

/// Output bytes as text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stdout lines parsed as JSON.
pub(crate) fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub(crate) fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
