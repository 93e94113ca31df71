//! `publish` to a type whose stream exists.

mod common;

use common::*;
use eventbus_suite::redis_server::RedisServer;

const STREAM: &str = "events:order_placed";

/// A plain connection to the server, for what the test does behind the tool's back.
fn redis(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Appends `n` entries to [`STREAM`]; returns their ids.
fn append(conn: &mut redis::Connection, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("envelope")
                .arg(format!("{{\"n\":{i}}}"))
                .query(conn)
                .unwrap()
        })
        .collect()
}

#[test]
fn publish_appends_to_an_existing_stream_unless_pubsub() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut conn = redis(&server);
    append(&mut conn, 1);

    let out = run(&url, &["publish", "order_placed", "{\"order_id\":7}"]);
    assert_code(&out, 0);
    let receipt = text(&out.stdout);
    assert!(
        receipt.contains("to the stream events:order_placed: a durable type"),
        "{receipt}"
    );
    assert_eq!(server.cli(&["XLEN", STREAM]), "2");
    let out = run(
        &url,
        &["publish", "order_placed", "{\"order_id\":8}", "--json"],
    );
    assert_code(&out, 0);
    assert!(json_lines(&out)[0]["entry_id"].is_string());
    assert_eq!(server.cli(&["XLEN", STREAM]), "3");

    // --pubsub publishes on the channel, leaving the stream alone.
    let tail = spawn(
        &url,
        &["tail", "order_placed", "--count", "1", "--timeout", "20"],
    );
    wait_subscribed(&server, STREAM, 1);
    let out = run(
        &url,
        &[
            "publish",
            "order_placed",
            "{\"order_id\":9}",
            "--pubsub",
            "--json",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["receivers"], 1);
    assert_eq!(server.cli(&["XLEN", STREAM]), "3");
    let tailed = finish(tail);
    assert_code(&tailed, 0);
    assert_eq!(json_lines(&tailed)[0]["envelope"]["data"]["order_id"], 9);

    // A type without a stream is still published.
    let out = run(&url, &["publish", "user_created", "{}", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["receivers"], 0);
    assert_eq!(server.cli(&["EXISTS", "events:user_created"]), "0");
}
