//! `eventbus monitor --once --json`: channels with subscriber counts, streams with groups.

mod common;

use common::*;

#[test]
fn monitor_lists_a_channel_and_a_group_with_pending_and_lag() {
    let Some(server) = server() else { return };
    let url = server.url();
    let mut tail = spawn(&url, &["tail", "user_created", "--timeout", "30"]);
    wait_subscribed(&server, "events:user_created", 1);

    for n in 0..3 {
        let data = format!("{{\"n\":{n}}}");
        assert_code(
            &run(&url, &["publish", "order_placed", &data, "--durable"]),
            0,
        );
    }
    // A group that read one entry and acknowledged nothing: 1 pending, 2 not yet read.
    server.cli(&[
        "XGROUP",
        "CREATE",
        "events:order_placed",
        "billing:charge",
        "0",
    ]);
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "billing:charge",
        "c1",
        "COUNT",
        "1",
        "STREAMS",
        "events:order_placed",
        ">",
    ]);

    let out = run(&url, &["monitor", "--once", "--json"]);
    assert_code(&out, 0);
    let snapshot = &json_lines(&out)[0];
    let channels = snapshot["channels"].as_array().unwrap();
    let channel = channels
        .iter()
        .find(|c| c["channel"] == "events:user_created")
        .unwrap_or_else(|| panic!("{snapshot}"));
    assert_eq!(channel["subscribers"], 1);
    assert_eq!(snapshot["patterns"], 0);

    let streams = snapshot["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{snapshot}");
    assert_eq!(streams[0]["stream"], "events:order_placed");
    assert_eq!(streams[0]["length"], 3);
    let group = &streams[0]["groups"][0];
    assert_eq!(group["group"], "billing:charge");
    assert_eq!(group["consumers"], 1);
    assert_eq!(group["pending"], 1);
    assert_eq!(group["lag"], 2);
    assert!(
        group["last_delivered_id"].as_str().unwrap().contains('-'),
        "{group}"
    );

    let out = run(&url, &["monitor", "--once"]);
    assert_code(&out, 0);
    let text = text(&out.stdout);
    assert!(text.contains("events:user_created"), "{text}");
    assert!(text.contains("billing:charge"), "{text}");

    tail.kill().expect("stopping the tail");
    tail.wait().expect("reaping the tail");
}

#[test]
fn redis_unix_urls_work() {
    let Some(server) = eventbus_suite::redis_server::RedisServer::builder()
        .unix_socket(true)
        .start_or_skip()
    else {
        return;
    };
    let url = server.unix_url();
    assert!(url.starts_with("redis+unix://"), "{url}");
    assert_code(
        &run(&url, &["publish", "order_placed", "{}", "--durable"]),
        0,
    );
    let out = run(&url, &["monitor", "--once", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["streams"][0]["length"], 1);
}

#[test]
fn monitor_shows_the_outbox_with_postgres() {
    let Some(server) = server() else { return };
    let Some(pg) = eventbus_suite::postgres::Postgres::start_or_skip() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Three committed rows, and no relay anywhere to take them.
    rt.block_on(async {
        let pool = eventbus_suite::orders::pool(&pg.url()).await;
        let outbox = eventbus::Outbox::postgres(pool.clone()).relay(false);
        let bus = eventbus::EventBus::builder()
            .outbox(outbox)
            .connect("memory://")
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        let orders =
            (1..=3).map(|order_id| eventbus_suite::orders::OrderPlaced { order_id, total: 1 });
        bus.outbox().publish_all(&mut tx, orders).await.unwrap();
        tx.commit().await.unwrap();
        bus.shutdown().await.unwrap();
    });
    let out = run(
        &server.url(),
        &["monitor", "--once", "--json", "--postgres", &pg.url()],
    );
    assert_code(&out, 0);
    let outbox = &json_lines(&out)[0]["outbox"];
    assert_eq!(outbox["depth"], 3, "{outbox}");
    assert_eq!(outbox["poisoned"], 0, "{outbox}");
    assert!(outbox["relay_holder"].is_null(), "{outbox}");
    assert!(outbox["oldest_age_ms"].as_u64().is_some(), "{outbox}");

    let out = run(
        &server.url(),
        &["monitor", "--once", "--postgres", &pg.url()],
    );
    assert_code(&out, 0);
    let shown = text(&out.stdout);
    assert!(shown.contains("outbox (PostgreSQL)"), "{shown}");
    assert!(shown.contains("waiting 3"), "{shown}");

    let args = [
        "monitor",
        "--once",
        "--postgres",
        &pg.url(),
        "--table-prefix",
        "Bad-",
    ];
    let out = run(&server.url(), &args);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("not a plain PostgreSQL identifier"),
        "{}",
        text(&out.stderr)
    );
}
