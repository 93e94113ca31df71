//! The documented exit codes and messages: usage, connection, timeout, invalid data.

mod common;

use common::*;

#[test]
fn an_unreachable_server_exits_3_naming_the_url_without_its_password() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:s3cret@127.0.0.1:{port}");
    for args in [
        &["monitor", "--once"][..],
        &["publish", "t", "{}"],
        &["tail", "--count", "1"],
    ] {
        let out = run(&url, args);
        assert_code(&out, 3);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("cannot connect to redis://:***@127.0.0.1:{port}")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn a_wrong_url_exits_3() {
    let out = run("http://user:pw@example.com", &["monitor", "--once"]);
    assert_code(&out, 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("invalid URL http://user:***@example.com"),
        "{stderr}"
    );
    assert!(!stderr.contains(":pw@"), "{stderr}");
}

#[test]
fn a_wrong_password_exits_3() {
    let Some(server) = eventbus_suite::redis_server::RedisServer::builder()
        .password("right")
        .start_or_skip()
    else {
        return;
    };
    let url = format!("redis://:n0tit@127.0.0.1:{}", server.port());
    let out = run(&url, &["monitor", "--once"]);
    assert_code(&out, 3);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("redis://:***@127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("n0tit"), "{stderr}");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let out = run("redis://127.0.0.1:1", &["no-such-command"]);
    assert_code(&out, 1);
    let out = run("redis://127.0.0.1:1", &["tail", "--from", "0"]);
    assert_code(&out, 1); // --from needs --stream
    let out = run("redis://127.0.0.1:1", &["--help"]);
    assert_code(&out, 0);
    let help = text(&out.stdout);
    for needle in [
        "Examples:",
        "Exit codes:",
        "5  timeout",
        "6  confirmation refused",
        "7  conflict",
    ] {
        assert!(help.contains(needle), "{needle} missing from {help}");
    }
    for sub in [
        &["tail", "--help"][..],
        &["publish", "--help"],
        &["monitor", "--help"],
        &["dlq", "purge", "--help"],
        &["groups", "list", "--help"],
        &["groups", "move", "--help"],
        &["groups", "delete", "--help"],
    ] {
        let out = run("redis://127.0.0.1:1", sub);
        assert_code(&out, 0);
        assert!(text(&out.stdout).contains("Examples:"), "{sub:?}");
    }
}

#[test]
fn invalid_json_data_exits_1_before_connecting() {
    let out = run(
        "redis://127.0.0.1:1",
        &["publish", "user_created", "{\"user_id\": "],
    );
    assert_code(&out, 1);
    assert!(
        text(&out.stderr).contains("the event data is not valid JSON"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn data_from_a_file_and_from_stdin() {
    let Some(server) = server() else { return };
    let url = server.url();
    let path = std::env::temp_dir().join(format!("eventbus-cli-data-{}.json", std::process::id()));
    std::fs::write(&path, "{\"from\": \"file\"}\n").unwrap();
    let out = run(
        &url,
        &["publish", "t", &format!("@{}", path.display()), "--durable"],
    );
    let _ = std::fs::remove_file(&path);
    assert_code(&out, 0);

    let mut child = eventbus(&url, &["publish", "t", "-", "--durable"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"from\":\"stdin\"}")
        .unwrap();
    assert_code(&finish(child), 0);

    let out = run(
        &url,
        &[
            "tail",
            "--stream",
            "t",
            "--from",
            "0",
            "--count",
            "2",
            "--timeout",
            "20",
        ],
    );
    let froms: Vec<_> = json_lines(&out)
        .iter()
        .map(|l| l["envelope"]["data"]["from"].clone())
        .collect();
    assert_eq!(froms, vec!["file", "stdin"]);
}

#[test]
fn a_timeout_with_nothing_received_exits_5() {
    let Some(server) = server() else { return };
    let out = run(&server.url(), &["tail", "quiet", "--timeout", "0.3"]);
    assert_code(&out, 5);
    assert!(
        text(&out.stderr).contains("nothing received"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
}
