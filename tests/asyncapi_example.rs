//! The AsyncAPI 3.0 documents of the `event_driven` example's services validate against the
//! official AsyncAPI 3.0.0 JSON Schema (vendored in `tests/asyncapi`), and say what the
//! services publish and receive, on which channel, with which delivery model.

use std::process::Command;

use eventbus_suite::examples::example_binary;
use eventbus_suite::redis_server::RedisServer;
use serde_json::Value;

/// The official schema's validator.
fn asyncapi_validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/asyncapi/asyncapi-3.0.0.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the AsyncAPI schema compiles")
}

/// Panics listing every violation of the AsyncAPI schema.
fn assert_valid(doc: &Value) {
    let validator = asyncapi_validator();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "invalid AsyncAPI 3.0 document: {errors:#?}\n{doc:#}"
    );
}

#[test]
fn the_event_driven_services_documents_validate() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let dir = tempdir();
    let out = Command::new(example_binary("event_driven"))
        .env("REDIS_URL", server.url())
        .args(["--asyncapi", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let (backoffice, web) = (read("backoffice.json"), read("web.json"));
    assert_valid(&backoffice);
    assert_valid(&web);

    assert_eq!(backoffice["info"]["title"], "backoffice");
    let host = format!("127.0.0.1:{}", server.port());
    assert_eq!(backoffice["servers"]["redis"]["host"], host.as_str());
    let ops = backoffice["operations"].as_object().unwrap();
    let mut names: Vec<&str> = ops.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "receive_order_placed",
            "receive_system_alert",
            "receive_user_created",
            "send_system_alert"
        ]
    );
    let channel = &backoffice["channels"]["order_placed"];
    assert_eq!(channel["address"], "events:order_placed");
    assert_eq!(channel["x-eventbus-delivery"], "pubsub");
    let message = &backoffice["components"]["messages"]["order_placed"];
    assert_eq!(message["x-eventbus-dataversion"], "2");
    let payload = &message["payload"];
    assert_eq!(payload["properties"]["type"]["const"], "order_placed");
    assert_eq!(payload["properties"]["specversion"]["const"], "1.0");
    let handlers = &ops["receive_user_created"]["x-eventbus-handlers"];
    assert_eq!(handlers.as_array().unwrap().len(), 2, "{handlers}");

    let web_ops = web["operations"].as_object().unwrap();
    assert!(web_ops.contains_key("send_user_created") && web_ops.contains_key("send_order_placed"));
    assert_eq!(web_ops.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn durable_and_keyed_channels_are_described_and_validate() {
    use eventbus::{Event, EventBus};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, Event)]
    #[event(name = "invoice_due", durable)]
    struct InvoiceDue {
        id: u64,
    }
    #[derive(Debug, Serialize, Deserialize, Event)]
    #[event(name = "note_added", channel = "user:{user_id}:notes")]
    struct NoteAdded {
        user_id: u64,
    }

    let builder = EventBus::builder()
        .service("billing")
        .handler(|_: InvoiceDue| async {})
        .publishes::<NoteAdded>();
    let before = builder.asyncapi();
    assert_valid(&before);
    assert!(
        before.get("servers").is_none(),
        "no server before connecting"
    );
    let bus = builder.connect("memory://").await.unwrap();
    let doc = bus.asyncapi();
    assert_valid(&doc);
    let invoice = &doc["channels"]["invoice_due"];
    assert_eq!(invoice["x-eventbus-delivery"], "durable");
    let handlers = &doc["operations"]["receive_invoice_due"]["x-eventbus-handlers"][0];
    assert!(
        handlers["consumerGroup"]
            .as_str()
            .unwrap()
            .starts_with("billing:"),
        "{handlers}"
    );
    // The validator does reject what breaks the specification.
    let mut broken = doc.clone();
    broken["channels"]["invoice_due"]["address"] = serde_json::json!(5);
    broken["operations"]["receive_invoice_due"]["action"] = serde_json::json!("listen");
    assert!(asyncapi_validator().iter_errors(&broken).count() >= 2);
    let notes = &doc["channels"]["note_added"];
    assert_eq!(notes["address"], "user:{user_id}:notes");
    assert!(notes["parameters"]["user_id"].is_object(), "{notes}");
    bus.shutdown().await.unwrap();
}

/// A fresh directory under the system's temporary directory.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "eventbus-asyncapi-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The documents come from the services' builders: `--asyncapi` writes them even when no
/// server answers (the example then fails to connect, after writing them).
#[test]
fn the_documents_need_no_server() {
    let dir = tempdir();
    let out = Command::new(example_binary("event_driven"))
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .args(["--asyncapi", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing listens on port 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not connect"), "{stderr}");
    for name in ["backoffice.json", "web.json"] {
        let text = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{name} was not written: {e}\n{stderr}"));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_valid(&doc);
        assert_eq!(doc["servers"]["redis"]["host"], "127.0.0.1:1", "{name}");
    }
}
