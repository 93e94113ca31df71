//! Two services in two OS processes exchange typed events through a real redis-server: the
//! `ping_pong` example, started twice, once as `pong` and once as `ping`.
//!
//! The example binary is built once per run with `cargo build --example ping_pong` into the
//! target directory of this test binary (a no-op after `cargo test`, which builds it anyway).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use eventbus::{Envelope, Event, EventBus};
use eventbus_suite::examples::example_binary;
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long either process may take.
const LIMIT: Duration = Duration::from_secs(30);

/// The same wire shape as the example's `Pong`: this process listens in on the replies.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Pong {
    seq: u64,
    pid: u32,
}

fn spawn(exe: &Path, url: &str, args: &[&str]) -> tokio::process::Child {
    Command::new(exe)
        .args(args)
        .env("REDIS_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ping_pong")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_pong_processes_exchange_typed_events() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let exe = example_binary("ping_pong");
    let url = server.url();
    let started = std::time::Instant::now();

    // This process listens in on the pongs too, to check them on the wire.
    let overheard = Seen::new();
    let o = overheard.clone();
    let listener = EventBus::builder()
        .service("observer")
        .handler(move |p: Envelope<Pong>| {
            let o = o.clone();
            async move {
                o.push((
                    p.data().seq,
                    p.data().pid,
                    p.source().to_owned(),
                    p.causation_id().map(str::to_owned),
                ))
            }
        })
        .connect(&url)
        .await
        .unwrap();

    let mut pong = spawn(&exe, &url, &["pong", "--count", "3"]);
    let mut pong_lines = BufReader::new(pong.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(LIMIT, pong_lines.next_line())
        .await
        .expect("pong started within the time limit")
        .unwrap()
        .unwrap_or_default();
    let pong_pid = pong.id().expect("pong runs");
    assert_eq!(ready, format!("pong: ready (process {pong_pid})"));

    let ping = spawn(&exe, &url, &["ping", "--count", "3"]);
    let ping_pid = ping.id().expect("ping runs");
    let ping_out = tokio::time::timeout(LIMIT, ping.wait_with_output())
        .await
        .expect("ping finished within the time limit")
        .unwrap();
    let ping_stdout = String::from_utf8_lossy(&ping_out.stdout).into_owned();
    assert!(
        ping_out.status.success(),
        "ping failed ({}):\n{ping_stdout}\n{}",
        ping_out.status,
        String::from_utf8_lossy(&ping_out.stderr)
    );

    let mut pong_rest = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(line) = pong_lines.next_line().await.unwrap() {
            pong_rest.push(line);
        }
    })
    .await
    .expect("pong finished within the time limit");
    let pong_status = pong.wait().await.unwrap();
    assert!(
        pong_status.success(),
        "pong failed: {pong_status}\n{pong_rest:?}"
    );

    // ping saw each pong answer its own ping, from the other process.
    let ping_lines: Vec<&str> = ping_stdout.lines().collect();
    assert_eq!(ping_lines.len(), 4, "{ping_stdout}");
    for (i, line) in ping_lines[..3].iter().enumerate() {
        let prefix = format!("ping: pong #{} from process {pong_pid} in ", i + 1);
        assert!(
            line.starts_with(&prefix),
            "{line:?} should start with {prefix:?}"
        );
        assert!(line.contains(" ms (caused by "), "{line}");
    }
    assert_eq!(ping_lines[3], "ping: 3 pong(s) received");

    // pong answered each ping of the ping process, then stopped by itself.
    let expected: Vec<String> = (1..=3)
        .map(|i| format!("pong: answered ping #{i} from process {ping_pid}"))
        .chain(["pong: answered 3 ping(s)".to_owned()])
        .collect();
    assert_eq!(pong_rest, expected);

    // The pongs on the wire: from the pong process, each caused by a ping.
    assert!(wait_for(Duration::from_secs(5), || overheard.len() == 3).await);
    let ids: Vec<&str> = ping_lines[..3]
        .iter()
        .map(|l| l.rsplit("caused by ").next().unwrap().trim_end_matches(')'))
        .collect();
    for (i, (seq, pid, source, causation)) in overheard.snapshot().into_iter().enumerate() {
        assert_eq!(seq, i as u64 + 1);
        assert_eq!(pid, pong_pid);
        assert_eq!(source, "pong");
        assert_eq!(
            causation.as_deref(),
            Some(ids[i]),
            "pong {seq} names its ping"
        );
    }
    assert!(started.elapsed() < LIMIT);
    listener.shutdown().await.unwrap();
}
