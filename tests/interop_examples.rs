//! The examples, run as their users run them: each against a throwaway redis-server named by
//! `REDIS_URL`, checked for a zero exit status and the lines that show it did its job.
//!
//! The example binaries are built once per run with `cargo build --example ...` into the
//! target directory of this test binary (a no-op after `cargo test`, which builds them anyway).

use std::process::{Output, Stdio};
use std::time::Duration;

use eventbus::{Envelope, EventBus, HandlerOptions, Message, Topic};
use eventbus_suite::examples::example_binary;
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long one example run may take.
const LIMIT: Duration = Duration::from_secs(30);

/// Starts an example with `REDIS_URL=url`; stdout and stderr piped, killed on drop.
fn spawn(name: &str, url: &str, args: &[&str], stdin: Stdio) -> Child {
    Command::new(example_binary(name))
        .args(args)
        .env("REDIS_URL", url)
        .env_remove("MONITOR_ITERATIONS")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start example {name}: {e}"))
}

/// What an example printed, and how it ended.
struct Run {
    output: Output,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts a zero exit status and that stdout has each of `lines` as a whole line, or as
    /// the start of a line when it ends in `...`.
    #[track_caller]
    fn assert_ok_with(&self, lines: &[&str]) {
        let stdout = self.stdout();
        assert!(
            self.output.status.success(),
            "exit status {}\nstdout:\n{stdout}\nstderr:\n{}",
            self.output.status,
            self.stderr()
        );
        for line in lines {
            let found = match line.strip_suffix("...") {
                Some(start) => stdout.lines().any(|l| l.starts_with(start)),
                None => stdout.lines().any(|l| l == *line),
            };
            assert!(
                found,
                "no line `{line}` in stdout:\n{stdout}\nstderr:\n{}",
                self.stderr()
            );
        }
    }
}

async fn finish(name: &str, child: Child) -> Run {
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("example {name} did not finish within {LIMIT:?}"))
        .expect("wait for the example");
    Run { output }
}

async fn run(name: &str, url: &str, args: &[&str]) -> Run {
    finish(name, spawn(name, url, args, Stdio::null())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_every_subscriber() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let run = run("notifications", &server.url(), &[]).await;
    run.assert_ok_with(&[
        "published `Welcome` on notifications to 3 subscriber(s)",
        "[  sms] to user 1001: Order shipped - your order o-17 is on its way",
        "all 3 subscribers received 3 notifications",
    ]);
    assert_eq!(run.stdout().matches("] to user ").count(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_channel_reads_three_raw_channels() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    run("multi_channel", &server.url(), &[])
        .await
        .assert_ok_with(&[
            "[   news] Parliament passes the budget",
            "[weather] Storm warning for the coast",
            "sports: 2 message(s)",
            "received 6 messages on 3 channels",
        ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_route_keyed_channels_and_system_pattern() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    run("patterns", &server.url(), &[]).await.assert_ok_with(&[
        "listening on pattern `user:*:notifications`",
        "listening on channel `user:42:notifications`",
        "published on user:42:notifications",
        "[all users] user 7: your report is ready",
        "[all users] user 42: you have a new follower",
        "[user 42 only] you have a new follower",
        r#"[system:*] deployed: {"service":"checkout","version":"2.4.1"}"#,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_driven_isolates_the_failing_handler() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let run = run("event_driven", &server.url(), &[]).await;
    run.assert_ok_with(&[
        "welcome mail sent to Ada <ada@example.com>",
        "welcome mail sent to Grace <grace@example.com>",
        "isolation: 2 welcome mails sent although the CRM sync failed 2 times",
    ]);
    let stdout = run.stdout();
    assert_eq!(
        stdout
            .matches("on_error: handler `sync_to_crm` returned an error: crm.example.com refused")
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("paging on-call [high]: order o-2 is over 1000 (caused by event 0"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reads_stdin_and_other_members_see_it() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    // Another member of #general, in this process.
    let heard = Seen::new();
    let h = heard.clone();
    let member = EventBus::builder()
        .service("grace")
        .handler_on(
            Topic::channel("chat:general"),
            move |m: Envelope<serde_json::Value>| {
                let h = h.clone();
                async move { h.push(m.into_data()) }
            },
        )
        .connect(&url)
        .await
        .unwrap();

    let mut child = spawn("chat", &url, &["--user", "ada"], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"hello\n/join random\nhi there\n/quit\nnot sent\n")
        .await
        .unwrap();
    drop(stdin);
    let run = finish("chat", child).await;
    run.assert_ok_with(&[]);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "[general] * ada joined",
            "[general] ada: hello",
            "[general] * ada left",
            "[random] * ada joined",
            "[random] ada: hi there",
            "[random] * ada left",
            "bye",
        ],
        "{stdout}"
    );

    assert!(wait_for(Duration::from_secs(5), || heard.len() == 3).await);
    let kinds: Vec<_> = heard
        .snapshot()
        .iter()
        .map(|d| {
            (
                d["user"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
                d["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |kind: &str, text: &str| ("ada".to_owned(), kind.to_owned(), text.to_owned());
    assert_eq!(
        kinds,
        [
            expect("join", ""),
            expect("say", "hello"),
            expect("leave", "")
        ]
    );
    member.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_channels_subscribers_and_patterns() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let url = server.url();
    let watched = EventBus::builder()
        .handler_with(
            HandlerOptions::new()
                .topic(Topic::channel("orders"))
                .topic(Topic::pattern("events:*")),
            |_: Message| async {},
        )
        .connect(&url)
        .await
        .unwrap();

    // A durable stream with one group that has not read its one entry yet.
    server.cli(&[
        "XGROUP",
        "CREATE",
        "events:jobs",
        "billing",
        "$",
        "MKSTREAM",
    ]);
    server.cli(&["XADD", "events:jobs", "*", "envelope", "{}"]);

    let once = run("monitor", &url, &["--once", "--stream", "events:jobs"]).await;
    once.assert_ok_with(&[
        "active channels: 1",
        "  orders   subscribers=1",
        "pattern subscriptions: 1",
        "stream events:jobs: 1 group(s)",
        "  billing  consumers=0 pending=0 lag=1",
    ]);
    assert!(once.stdout().starts_with("eventbus monitor #1  ping "));
    assert!(!once.stdout().contains("#2"), "--once stops after one");

    let child = Command::new(example_binary("monitor"))
        .env("REDIS_URL", &url)
        .env("MONITOR_ITERATIONS", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let twice = finish("monitor", child).await;
    twice.assert_ok_with(&["pattern subscriptions: 1"]);
    assert_eq!(twice.stdout().matches("eventbus monitor #").count(), 2);
    watched.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_subscriber_authenticates_and_runs_for_its_seconds() {
    let Some(server) = RedisServer::builder().password("s3cret").start_or_skip() else {
        return;
    };
    let started = std::time::Instant::now();
    let run = run(
        "robust_subscriber",
        &server.url_with_password(),
        &["--seconds", "2"],
    )
    .await;
    run.assert_ok_with(&[
        "connecting to redis://:***@127.0.0.1:...",
        "connection: subscriber connected",
        "subscribed to channel `events:heartbeat` and pattern `events:*`",
        "received heartbeat #1 (sent ...",
        "stopping",
    ]);
    let stdout = run.stdout();
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stopped: ")
            && last.ends_with(" heartbeat(s) received, 0 reconnect(s), 0 decode error(s)"),
        "{stdout}"
    );
    assert!(
        !run.stdout().contains("s3cret"),
        "the password is never shown"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_subscriber_reports_a_wrong_password_and_exits_non_zero() {
    let Some(server) = RedisServer::builder().password("s3cret").start_or_skip() else {
        return;
    };
    let url = format!("redis://:hunter2-not-it@127.0.0.1:{}", server.port());
    let run = run("robust_subscriber", &url, &["--seconds", "2"]).await;
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    let stderr = run.stderr();
    assert!(
        stderr.starts_with("error: could not connect to redis://:***@127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("(Auth)"), "{stderr}");
    assert!(
        stderr.contains("hint: give the password in the URL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is never shown: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_subscriber_prints_reconnects_after_a_server_restart() {
    let Some(mut server) = RedisServer::builder().password("s3cret").start_or_skip() else {
        return;
    };
    let mut child = spawn(
        "robust_subscriber",
        &server.url_with_password(),
        &["--seconds", "4"],
        Stdio::null(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let first_beat = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("received heartbeat #1 ");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .expect("a first heartbeat within the time limit");
    assert!(first_beat, "{seen:?}");
    server.restart();
    let rest = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
        }
    });
    rest.await.expect("the example ended within the time limit");
    let status = child.wait().await.unwrap();
    let stdout = seen.join("\n");
    assert!(status.success(), "{status}\n{stdout}");
    assert!(stdout.contains("connection: subscriber lost ("), "{stdout}");
    assert!(
        stdout.contains("connection: subscriber reconnected after"),
        "{stdout}"
    );
    assert!(
        stdout.contains("connection: resubscribed to 2 topic(s)"),
        "{stdout}"
    );
    let after = stdout
        .split("connection: resubscribed")
        .nth(1)
        .unwrap_or_default();
    assert!(
        after.contains("received heartbeat #"),
        "heartbeats arrive again after the restart:\n{stdout}"
    );
    let last = seen.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("stopped: ") && !last.contains(" 0 reconnect(s)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_without_a_server_say_so_and_exit_non_zero() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    for name in ["notifications", "chat", "monitor"] {
        let run = run(name, &url, &[]).await;
        assert_eq!(
            run.output.status.code(),
            Some(1),
            "{name}: {}",
            run.stderr()
        );
        let stderr = run.stderr();
        assert!(
            stderr.starts_with(&format!("error: could not connect to {url}: ")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("hint: start a server with `redis-server --port 6379 --save '' &`"),
            "{name}: {stderr}"
        );
    }
}
