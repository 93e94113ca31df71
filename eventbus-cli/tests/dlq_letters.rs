//! `eventbus dlq`: letters made by a real failing durable handler, listed, shown, replayed
//! and purged.

mod common;

use common::*;
use eventbus::{Event, EventBus, HandlerOptions, RetryPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(durable)]
struct OrderPlaced {
    order_id: u64,
}

/// Publishes three orders through the CLI to a bus whose handler always fails; returns when
/// the three are dead letters, with the failing bus shut down.
async fn three_dead_letters(url: &str, server: &eventbus_suite::redis_server::RedisServer) {
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(
            HandlerOptions::new()
                .retry(RetryPolicy::never())
                .dead_letter(true),
            |_: OrderPlaced| async { Err::<(), _>(std::io::Error::other("card declined")) },
        )
        .connect(url)
        .await
        .unwrap();
    for n in 1..=3 {
        let data = format!("{{\"order_id\":{n}}}");
        assert_code(
            &run(url, &["publish", "order_placed", &data, "--durable"]),
            0,
        );
    }
    wait_until("three dead letters", || {
        server.cli(&["XLEN", "eventbus:dead:order_placed"]) == "3"
    });
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_replay_and_purge() {
    let Some(server) = server() else { return };
    let url = server.url();
    three_dead_letters(&url, &server).await;

    let out = run(&url, &["dlq", "list", "order_placed", "--json"]);
    assert_code(&out, 0);
    let letters = json_lines(&out);
    assert_eq!(letters.len(), 3, "{letters:?}");
    for (n, letter) in letters.iter().enumerate() {
        assert_eq!(letter["type"], "order_placed");
        assert_eq!(letter["channel"], "events:order_placed");
        assert_eq!(letter["attempts"], 1);
        assert_eq!(letter["durable"], true);
        assert!(
            letter["error"].as_str().unwrap().contains("card declined"),
            "{letter}"
        );
        let payload: serde_json::Value =
            serde_json::from_str(letter["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["data"]["order_id"], n + 1);
    }
    let first = letters[0]["entry_id"].as_str().unwrap().to_owned();
    let text_list = run(&url, &["dlq", "list", "order_placed"]);
    assert!(text(&text_list.stdout).contains("3 dead letters of type order_placed"));

    let out = run(&url, &["dlq", "show", "order_placed", &first, "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0], letters[0]);
    let out = run(&url, &["dlq", "show", "order_placed", &first]);
    assert!(
        text(&out.stdout).contains("\"order_id\": 1"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&url, &["dlq", "show", "order_placed", "1-1"]);
    assert_code(&out, 4);

    // Replaying appends the original envelope to its stream again and removes the letter.
    let out = run(
        &url,
        &["dlq", "replay", "order_placed", &first, "--yes", "--json"],
    );
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["replayed"], 1);
    assert_eq!(server.cli(&["XLEN", "eventbus:dead:order_placed"]), "2");
    assert_eq!(server.cli(&["XLEN", "events:order_placed"]), "4");
    let out = run(
        &url,
        &[
            "tail",
            "--stream",
            "order_placed",
            "--from",
            "0",
            "--count",
            "4",
            "--timeout",
            "20",
        ],
    );
    let replayed = &json_lines(&out)[3]["envelope"];
    let original: serde_json::Value =
        serde_json::from_str(letters[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(replayed, &original);

    // Without --yes, and stdin not a terminal, nothing is done.
    let out = run(&url, &["dlq", "purge", "order_placed"]);
    assert_code(&out, 6);
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    assert_eq!(server.cli(&["XLEN", "eventbus:dead:order_placed"]), "2");
    let out = run(&url, &["dlq", "replay", "order_placed"]);
    assert_code(&out, 6);

    let out = run(&url, &["dlq", "purge", "order_placed", "--yes", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json_lines(&out)[0]["purged"], 2);
    assert_eq!(server.cli(&["EXISTS", "eventbus:dead:order_placed"]), "0");
    let out = run(&url, &["dlq", "list", "order_placed", "--json"]);
    assert_code(&out, 0);
    assert!(json_lines(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_and_purge_by_id() {
    let Some(server) = server() else { return };
    let url = server.url();
    three_dead_letters(&url, &server).await;
    let ids: Vec<String> = json_lines(&run(&url, &["dlq", "list", "order_placed", "--json"]))
        .iter()
        .map(|l| l["entry_id"].as_str().unwrap().to_owned())
        .collect();

    let out = run(&url, &["dlq", "purge", "order_placed", &ids[1], "--yes"]);
    assert_code(&out, 0);
    assert_eq!(
        text(&out.stdout).trim(),
        "purged 1 dead letters of type order_placed"
    );
    let out = run(&url, &["dlq", "purge", "order_placed", &ids[1], "--yes"]);
    assert_code(&out, 4);

    let out = run(&url, &["dlq", "replay", "order_placed", "--yes"]);
    assert_code(&out, 0);
    assert_eq!(
        text(&out.stdout).trim(),
        "replayed 2 dead letters of type order_placed"
    );
    assert_eq!(server.cli(&["XLEN", "eventbus:dead:order_placed"]), "0");
    assert_eq!(server.cli(&["XLEN", "events:order_placed"]), "5");
}
