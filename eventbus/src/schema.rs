//! JSON Schemas of events, from `schemars::JsonSchema` (the `schema` feature).

use serde_json::Value;

/// Where shared definitions go: the AsyncAPI document's `components.schemas`.
const DEFINITIONS: &str = "/components/schemas";

/// A type whose data has a JSON Schema. Every `#[derive(Event)]` type needs one with the
/// `schema` feature; any `schemars::JsonSchema` type has it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no JSON Schema: add `schemars::JsonSchema` to its derive list",
    note = "with eventbus's `schema` feature every `#[derive(Event)]` type describes its data \
            with schemars 1.x: `#[derive(Event, JsonSchema, Serialize, Deserialize)]`"
)]
pub trait EventSchema {
    /// The schema: draft 7, definitions under `/components/schemas`.
    fn event_schema() -> Value;
}

impl<T: schemars::JsonSchema> EventSchema for T {
    fn event_schema() -> Value {
        let mut settings = schemars::generate::SchemaSettings::draft07();
        settings.definitions_path = DEFINITIONS.into();
        let schema = settings.into_generator().into_root_schema_for::<T>();
        let mut value = schema.to_value();
        if let Some(map) = value.as_object_mut() {
            map.remove("$schema");
        }
        value
    }
}

/// The schema of `T`'s data; called by the code `#[derive(Event)]` writes.
pub fn json_schema<T: EventSchema>() -> Value {
    T::event_schema()
}
