//! `eventbus groups list|show|move|delete` on real consumer groups, and `publish` to a type
//! whose stream exists.

mod common;

use common::*;
use eventbus_suite::redis_server::RedisServer;
use redis::streams::{StreamInfoGroupsReply, StreamReadReply};

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

/// Creates `group` at `id`.
fn create(conn: &mut redis::Connection, group: &str, id: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(group)
        .arg(id)
        .exec(conn)
        .unwrap();
}

/// Reads up to `count` new entries into `group` as `consumer`; returns their ids.
fn read(conn: &mut redis::Connection, group: &str, consumer: &str, count: usize) -> Vec<String> {
    let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query(conn)
        .unwrap();
    let keys = reply.map(|r| r.keys).unwrap_or_default();
    keys.into_iter().flat_map(|k| k.ids).map(|e| e.id).collect()
}

fn ack(conn: &mut redis::Connection, group: &str, ids: &[String]) {
    redis::cmd("XACK")
        .arg(STREAM)
        .arg(group)
        .arg(ids)
        .exec(conn)
        .unwrap();
}

/// The names of the stream's groups.
fn group_names(conn: &mut redis::Connection) -> Vec<String> {
    let reply: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query(conn)
        .unwrap();
    reply.groups.into_iter().map(|g| g.name).collect()
}

#[test]
fn list_and_show_a_stream_with_two_groups() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut conn = redis(&server);
    let ids = append(&mut conn, 5);
    create(&mut conn, "billing:order_placed", "0");
    create(&mut conn, "shipping:order_placed", "$");
    let read_ids = read(&mut conn, "billing:order_placed", "billing-1", 2);
    assert_eq!(read_ids, ids[..2]);

    let out = run(&url, &["groups", "list", "--json"]);
    assert_code(&out, 0);
    let groups = json_lines(&out);
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["stream"], STREAM);
    assert_eq!(groups[0]["group"], "billing:order_placed");
    assert_eq!(groups[0]["consumers"], 1);
    assert_eq!(groups[0]["pending"], 2);
    assert_eq!(groups[0]["lag"], 3);
    assert_eq!(groups[0]["last_delivered_id"], ids[1].as_str());
    assert_eq!(groups[1]["group"], "shipping:order_placed");
    assert_eq!(groups[1]["consumers"], 0);
    assert_eq!(groups[1]["pending"], 0);
    assert_eq!(groups[1]["lag"], 0);
    assert_eq!(groups[1]["last_delivered_id"], ids[4].as_str());
    // The type, the key and --stream name the same stream.
    for args in [
        &["groups", "list", "order_placed", "--json"][..],
        &["groups", "list", STREAM, "--json"],
        &["groups", "list", "--stream", STREAM, "--json"],
    ] {
        assert_eq!(json_lines(&run(&url, args)), groups, "{args:?}");
    }

    let out = run(&url, &["groups", "list"]);
    assert_code(&out, 0);
    let table = text(&out.stdout);
    let billing = table
        .lines()
        .find(|l| l.contains("billing:order_placed"))
        .unwrap_or_else(|| panic!("{table}"));
    let columns: Vec<&str> = billing.split_whitespace().collect();
    assert_eq!(
        columns,
        [STREAM, "billing:order_placed", "1", "2", "3", &ids[1]]
    );
    assert!(table.contains("shipping:order_placed"), "{table}");

    let out = run(&url, &["groups", "list", "no_such_type"]);
    assert_code(&out, 4);
    assert!(
        text(&out.stderr).contains("no stream events:no_such_type"),
        "{}",
        text(&out.stderr)
    );

    let out = run(
        &url,
        &[
            "groups",
            "show",
            "order_placed",
            "billing:order_placed",
            "--json",
        ],
    );
    assert_code(&out, 0);
    let shown = &json_lines(&out)[0];
    assert_eq!(shown["pending"], 2);
    assert_eq!(shown["consumer_list"][0]["name"], "billing-1");
    assert_eq!(shown["consumer_list"][0]["pending"], 2);
    assert!(shown["consumer_list"][0]["idle_ms"].is_u64(), "{shown}");
    let oldest = shown["oldest_pending"].as_array().unwrap();
    let oldest_ids: Vec<&str> = oldest.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(oldest_ids, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(oldest[0]["consumer"], "billing-1");
    assert_eq!(oldest[0]["deliveries"], 1);

    let out = run(&url, &["groups", "show", STREAM, "billing:order_placed"]);
    assert_code(&out, 0);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("billing:order_placed on events:order_placed"),
        "{shown}"
    );
    assert!(shown.contains("pending 2"), "{shown}");
    assert!(shown.contains("billing-1"), "{shown}");
    assert!(shown.contains("(2 of 2)"), "{shown}");
    assert!(shown.contains(&ids[0]), "{shown}");

    let out = run(&url, &["groups", "show", STREAM, "nobody"]);
    assert_code(&out, 4);
}

#[test]
fn move_keeps_the_position() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut conn = redis(&server);
    let ids = append(&mut conn, 10);
    create(&mut conn, "billing:order_placed", "0");
    let done = read(&mut conn, "billing:order_placed", "billing-1", 4);
    ack(&mut conn, "billing:order_placed", &done);

    let out = run(
        &url,
        &[
            "groups",
            "move",
            "order_placed",
            "billing:order_placed",
            "billing:charge",
            "--yes",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "moved consumer group billing:order_placed to billing:charge on {STREAM} at {}; \
             billing:order_placed destroyed",
            ids[3]
        )
    );
    assert_eq!(group_names(&mut conn), ["billing:charge"]);
    // The lag stays known: the entries-read count came along.
    let listed = json_lines(&run(&url, &["groups", "list", "--json"]));
    assert_eq!(listed[0]["lag"], 6, "{listed:?}");

    let rest = read(&mut conn, "billing:charge", "billing-2", 100);
    assert_eq!(rest, ids[4..]);
}

#[test]
fn move_refuses_an_existing_new_group_and_pending_entries_without_force() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut conn = redis(&server);
    let ids = append(&mut conn, 6);
    create(&mut conn, "old", "0");
    create(&mut conn, "new", "0");
    let done = read(&mut conn, "old", "c1", 2);
    ack(&mut conn, "old", &done);

    let out = run(&url, &["groups", "move", STREAM, "old", "new", "--yes"]);
    assert_code(&out, 7);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the group new already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(group_names(&mut conn), ["new", "old"]);

    // Without --yes on a stdin that is not a terminal, nothing is done either.
    let out = run(&url, &["groups", "move", STREAM, "old", "new", "--force"]);
    assert_code(&out, 6);
    assert_eq!(group_names(&mut conn), ["new", "old"]);

    let out = run(
        &url,
        &["groups", "move", STREAM, "old", "new", "--force", "--yes"],
    );
    assert_code(&out, 0);
    assert!(
        text(&out.stdout).contains("new existed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(group_names(&mut conn), ["new"]);
    assert_eq!(read(&mut conn, "new", "c2", 100), ids[2..]);

    // A group with pending entries: refused, saying how many, unless --force.
    create(&mut conn, "busy", "0");
    read(&mut conn, "busy", "c3", 3);
    let out = run(&url, &["groups", "move", STREAM, "busy", "calm", "--yes"]);
    assert_code(&out, 7);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("has 3 pending entries"), "{stderr}");
    assert_eq!(group_names(&mut conn), ["busy", "new"]);
    let out = run(
        &url,
        &[
            "groups", "move", STREAM, "busy", "calm", "--force", "--yes", "--json",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["dropped_pending"], 3);
    assert_eq!(read(&mut conn, "calm", "c4", 100), ids[3..]);
}

#[test]
fn delete_removes_a_group_and_fails_on_a_missing_one() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut conn = redis(&server);
    append(&mut conn, 1);
    create(&mut conn, "billing:order_placed", "0");
    create(&mut conn, "billing:old_handler", "0");

    let out = run(
        &url,
        &["groups", "delete", "order_placed", "billing:old_handler"],
    );
    assert_code(&out, 6);
    assert_eq!(group_names(&mut conn).len(), 2);

    let out = run(
        &url,
        &[
            "groups",
            "delete",
            "order_placed",
            "billing:old_handler",
            "--yes",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "deleted consumer group billing:old_handler on {STREAM} (0 pending entries dropped)"
        )
    );
    assert_eq!(group_names(&mut conn), ["billing:order_placed"]);

    let out = run(
        &url,
        &["groups", "delete", STREAM, "billing:old_handler", "--yes"],
    );
    assert_code(&out, 4);
    assert_eq!(
        text(&out.stderr).trim(),
        format!("eventbus: error: no consumer group billing:old_handler on the stream {STREAM}")
    );
    let out = run(&url, &["groups", "delete", "no_such_type", "g", "--yes"]);
    assert_code(&out, 4);
    assert!(text(&out.stderr).contains("no stream events:no_such_type"));
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
