//! `eventbus tail`: pub/sub and streams, decoded envelopes and decode failures.

mod common;

use common::*;

#[test]
fn publish_then_tail_receives_it() {
    let Some(server) = server() else { return };
    let url = server.url();
    let tail = spawn(
        &url,
        &["tail", "user_created", "--count", "1", "--timeout", "20"],
    );
    wait_subscribed(&server, "events:user_created", 1);

    let published = run(
        &url,
        &[
            "publish",
            "user_created",
            r#"{"user_id":1001,"name":"Ada"}"#,
            "--json",
            "--correlation-id",
            "c-7",
        ],
    );
    assert_code(&published, 0);
    let receipt = &json_lines(&published)[0];
    assert_eq!(receipt["channel"], "events:user_created");
    assert_eq!(receipt["receivers"], 1);

    let out = finish(tail);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let envelope = &lines[0]["envelope"];
    assert_eq!(lines[0]["channel"], "events:user_created");
    assert_eq!(envelope["id"], receipt["id"]);
    assert_eq!(envelope["type"], "user_created");
    assert_eq!(envelope["source"], "eventbus-cli");
    assert_eq!(envelope["specversion"], "1.0");
    assert_eq!(envelope["correlationid"], "c-7");
    assert_eq!(
        envelope["data"],
        serde_json::json!({"user_id": 1001, "name": "Ada"})
    );
}

#[test]
fn plain_json_is_decoded_and_garbage_is_a_failure_line() {
    let Some(server) = server() else { return };
    let url = server.url();
    let tail = spawn(&url, &["tail", "--count", "2", "--timeout", "20"]);
    wait_patterns(&server, 1);

    let garbage = server.cli(&["PUBLISH", "events:user_created", "not json {"]);
    assert_eq!(garbage, "1");
    let plain =
        r#"{"type":"user_created","id":42,"timestamp":"2026-11-21T07:11:00","data":{"user_id":1}}"#;
    assert_eq!(server.cli(&["PUBLISH", "events:user_created", plain]), "1");

    let out = finish(tail);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["channel"], "events:user_created");
    assert_eq!(lines[0]["raw"], "not json {");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("message is not JSON"),
        "{}",
        lines[0]
    );
    let envelope = &lines[1]["envelope"];
    assert_eq!(envelope["type"], "user_created");
    assert_eq!(envelope["id"], "42");
    assert_eq!(envelope["time"], "2026-11-21T07:11:00.000000Z");
    assert_eq!(envelope["data"]["user_id"], 1);
}

#[test]
fn filters_leave_out_other_types_and_sources() {
    let Some(server) = server() else { return };
    let url = server.url();
    let tail = spawn(
        &url,
        &[
            "tail",
            "--type",
            "b",
            "--source",
            "svc",
            "--count",
            "1",
            "--timeout",
            "20",
        ],
    );
    wait_patterns(&server, 1);
    for (t, source) in [("a", "svc"), ("b", "other"), ("b", "svc")] {
        let out = run(&url, &["publish", t, "{}", "--source", source]);
        assert_code(&out, 0);
    }
    let out = finish(tail);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["envelope"]["type"], "b");
    assert_eq!(lines[0]["envelope"]["source"], "svc");
}

#[test]
fn durable_publish_then_tail_stream_from_the_start() {
    let Some(server) = server() else { return };
    let url = server.url();
    let published = run(
        &url,
        &[
            "publish",
            "order_placed",
            r#"{"order_id":"o-1","total":9.5}"#,
            "--durable",
            "--json",
        ],
    );
    assert_code(&published, 0);
    let receipt = &json_lines(&published)[0];
    let entry_id = receipt["entry_id"]
        .as_str()
        .expect("an entry id")
        .to_owned();
    assert_eq!(server.cli(&["XLEN", "events:order_placed"]), "1");

    let out = run(
        &url,
        &[
            "tail",
            "--stream",
            "order_placed",
            "--from",
            "0",
            "--count",
            "1",
            "--timeout",
            "20",
        ],
    );
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["channel"], "events:order_placed");
    assert_eq!(lines[0]["entry_id"], entry_id.as_str());
    assert_eq!(lines[0]["envelope"]["id"], receipt["id"]);
    assert_eq!(lines[0]["envelope"]["data"]["total"], 9.5);
    // Reading joined no consumer group.
    assert_eq!(server.cli(&["XINFO", "GROUPS", "events:order_placed"]), "");
}

#[test]
fn tail_stream_from_now_sees_only_new_entries() {
    let Some(server) = server() else { return };
    let url = server.url();
    assert_code(
        &run(
            &url,
            &["publish", "order_placed", r#"{"n":1}"#, "--durable"],
        ),
        0,
    );
    let tail = spawn(
        &url,
        &["tail", "--stream", "--count", "1", "--timeout", "20"],
    );
    // The tail reads with XREAD once it has found the stream and its last entry.
    wait_until("the tail's XREAD", || server.command_calls("xread") > 0);
    assert_code(
        &run(
            &url,
            &["publish", "order_placed", r#"{"n":2}"#, "--durable"],
        ),
        0,
    );
    let out = finish(tail);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["envelope"]["data"]["n"], 2);
}
