//! `rediss://` with a private certificate authority: `--tls-ca-cert` makes the tool trust it
//! for the bus and for its plain connection; without it the server's certificate is refused.

mod common;

use common::{json_lines, run, text};
use eventbus_suite::redis_server::RedisServer;

#[test]
fn a_private_ca_is_trusted_with_tls_ca_cert() {
    let Some(server) = RedisServer::builder().tls(true).start_or_skip() else {
        return;
    };
    let ca = std::env::temp_dir().join(format!("eventbus-cli-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, server.ca_cert_pem()).unwrap();
    let ca_arg = ca.to_str().unwrap();
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");

    let refused = run(&url, &["publish", "user_created", r#"{"user_id":1}"#]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains(&url),
        "{}",
        text(&refused.stderr)
    );

    let published = run(
        &url,
        &[
            "--tls-ca-cert",
            ca_arg,
            "publish",
            "user_created",
            r#"{"user_id":1}"#,
            "--json",
        ],
    );
    assert!(published.status.success(), "{}", text(&published.stderr));
    let receipt = &json_lines(&published)[0];
    assert_eq!(receipt["channel"], "events:user_created", "{receipt}");

    // The plain connection (stream and server queries) trusts it too.
    let monitor = run(
        &url,
        &["--tls-ca-cert", ca_arg, "monitor", "--once", "--json"],
    );
    assert!(monitor.status.success(), "{}", text(&monitor.stderr));
    std::fs::remove_file(&ca).unwrap();
}

#[test]
fn an_unreadable_ca_file_is_a_usage_error() {
    let out = run(
        "rediss://127.0.0.1:1",
        &["--tls-ca-cert", "/nonexistent/ca.pem", "monitor", "--once"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot read --tls-ca-cert /nonexistent/ca.pem"));
}
