//! The `schema` feature: every event describes its data with schemars, shared definitions
//! land in the AsyncAPI document's `components.schemas`, the document validates against the
//! official AsyncAPI 3.0 schema, and an event without `JsonSchema` is a clear compile error.
//!
//! `cargo test -p eventbus --features schema --test schema`
#![cfg(feature = "schema")]

use eventbus::{Event, EventBus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
enum Channel {
    Web,
    Store,
}

#[derive(Debug, Serialize, Deserialize, Event, JsonSchema)]
#[event(name = "order_placed", durable)]
struct OrderPlaced {
    order_id: String,
    lines: Vec<Line>,
    channel: Channel,
    note: Option<String>,
}

fn validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/asyncapi/asyncapi-3.0.0.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn an_event_describes_its_data() {
    let schema = OrderPlaced::data_schema().expect("the derive fills it in");
    assert_eq!(schema["title"], "OrderPlaced");
    let props = &schema["properties"];
    assert_eq!(props["order_id"]["type"], "string");
    assert_eq!(props["lines"]["items"]["$ref"], "#/components/schemas/Line");
    assert_eq!(
        schema["required"],
        serde_json::json!(["order_id", "lines", "channel"])
    );
    let defs = &schema["components"]["schemas"];
    assert_eq!(defs["Line"]["properties"]["quantity"]["type"], "integer");
    assert!(defs["Channel"].is_object(), "{schema:#}");
    assert!(schema.get("$schema").is_none());
}

#[tokio::test]
async fn the_asyncapi_document_carries_the_schemas_and_validates() {
    let bus = EventBus::builder()
        .service("shop")
        .publishes::<OrderPlaced>()
        .handler(|_: OrderPlaced| async {})
        .connect("memory://")
        .await
        .unwrap();
    let doc = bus.asyncapi();
    let errors: Vec<String> = validator()
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    let data = &doc["components"]["messages"]["order_placed"]["payload"]["properties"]["data"];
    assert_eq!(
        data["properties"]["lines"]["items"]["$ref"],
        "#/components/schemas/Line"
    );
    assert!(data.get("components").is_none(), "definitions moved out");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("Line") && schemas.contains_key("Channel"));
    bus.shutdown().await.unwrap();
}

#[test]
fn an_event_without_json_schema_is_a_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/schema_ui/*.rs");
}
