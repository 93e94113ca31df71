//! The envelope through serde (`Serialize`/`Deserialize` are the wire contract, as `encode` and
//! `decode`), what encoding refuses to publish, the content type, and large integers.

use eventbus::{DecodeError, Envelope, Event, RawEnvelope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    total: f64,
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    price: f32,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "order_placed";
    const VERSION: u32 = 2;
    const CHANNEL: &'static str = "events:order_placed";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note(String);

impl Event for Note {
    const TYPE: &'static str = "note";
    const CHANNEL: &'static str = "events:note";
}

const ID: &str = "0193a5c4-8f2e-7d3a-9b1c-2f4e6a8b0c1d";

fn order(total: f64, price: f32) -> OrderPlaced {
    OrderPlaced {
        order_id: "o-1".into(),
        total,
        items: vec![
            Item {
                sku: "a".into(),
                price: 1.5,
            },
            Item {
                sku: "b".into(),
                price,
            },
        ],
    }
}

fn full() -> Envelope<OrderPlaced> {
    Envelope::new(order(99.5, 2.0))
        .with_source("shop")
        .with_correlation_id("c-\"1\"")
        .with_causation_id("k")
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_extension("tenant", "acme")
        .expect("a valid extension")
        .with_extension("priority", 3)
        .expect("a valid extension")
}

// ---------------------------------------------------------------------------------------------
// Serialize / Deserialize

#[test]
fn serialize_writes_the_same_bytes_as_encode() {
    for envelope in [full(), Envelope::new(order(0.0, 0.0))] {
        let encoded = String::from_utf8(envelope.encode().unwrap()).unwrap();
        assert_eq!(serde_json::to_string(&envelope).unwrap(), encoded);
        assert_eq!(serde_json::to_vec(&envelope).unwrap(), encoded.as_bytes());
        // Other serializers see the same members in the same order.
        let value = serde_json::to_value(&envelope).unwrap();
        let reparsed: Value = serde_json::from_str(&encoded).unwrap();
        assert_eq!(value, reparsed);
    }
}

#[test]
fn serialize_of_a_raw_envelope_keeps_data_as_it_came() {
    let input = br#"{"type":"order_placed","id":7,"data":{"total":1.50, "x":[1 ,2]},"zeta":true}"#;
    let raw = RawEnvelope::parse(input).unwrap();
    let json = serde_json::to_string(&raw).unwrap();
    assert_eq!(json.as_bytes(), raw.encode().unwrap());
    assert!(
        json.contains(r#""data":{"total":1.50, "x":[1 ,2]}"#),
        "{json}"
    );
    let back: RawEnvelope = serde_json::from_str(&json).unwrap();
    // The one thing filled in: an absent source is written as "eventbus".
    assert_eq!(back.header(), &raw.header().clone().with_source("eventbus"));
    assert_eq!(back.data().get(), raw.data().get());
}

#[test]
fn deserialize_reads_what_decode_reads() {
    let inputs = [
        String::from_utf8(full().encode().unwrap()).unwrap(),
        // The plain shape: integer id, zone-less timestamp, unknown attributes.
        r#"{"type":"order_placed","id":42,"timestamp":"2026-11-21 07:11:00.25","data":{"order_id":"o","total":1.0,"items":[]},"origin":{"host":"py"}}"#.to_owned(),
        r#"{"type":"order_placed","timestamp":1795245060.5,"data":{"order_id":"o","total":1.0,"items":[]}}"#.to_owned(),
    ];
    for input in inputs {
        let decoded = Envelope::<OrderPlaced>::decode(input.as_bytes()).unwrap();
        let from_str: Envelope<OrderPlaced> = serde_json::from_str(&input).unwrap();
        let from_slice: Envelope<OrderPlaced> = serde_json::from_slice(input.as_bytes()).unwrap();
        let from_value: Envelope<OrderPlaced> =
            serde_json::from_value(serde_json::from_str(&input).unwrap()).unwrap();
        for serde in [from_str, from_slice, from_value] {
            // An absent id is made fresh for each read; everything else is the same.
            let serde = if input.contains(r#""id""#) {
                serde
            } else {
                serde.with_id(decoded.id())
            };
            assert_eq!(serde, decoded, "{input}");
        }
    }
    let plain: Envelope<OrderPlaced> = serde_json::from_str(
        r#"{"type":"order_placed","id":42,"timestamp":"2026-11-21T07:11:00","data":{"order_id":"o","total":1.0,"items":[]},"origin":"py"}"#,
    )
    .unwrap();
    assert_eq!(plain.id(), "42");
    assert_eq!(plain.time().to_rfc3339(), "2026-11-21T07:11:00+00:00");
    assert_eq!(plain.extension("origin"), Some(&json!("py")));
}

#[test]
fn serde_round_trips() {
    let envelope = full();
    let back: Envelope<OrderPlaced> =
        serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
    assert_eq!(back, envelope);
    let value: Envelope<Value> =
        serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
    assert_eq!(value.data()["items"][1]["sku"], "b");
    // Keys inside a `Value` come out sorted; the attributes are the same.
    assert_eq!(
        serde_json::to_vec(&value).unwrap(),
        value.encode_untyped().unwrap()
    );
    let again: Envelope<OrderPlaced> =
        serde_json::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap();
    assert_eq!(again, envelope);
}

#[test]
fn deserialize_errors_carry_the_decode_message() {
    let err = |input: &str| {
        serde_json::from_str::<Envelope<OrderPlaced>>(input)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(r#"{"data":{}}"#).starts_with("message has no `type` attribute"),
        "{}",
        err(r#"{"data":{}}"#)
    );
    assert!(err(r#"[1]"#).starts_with("message is not a JSON object: found an array"));
    assert!(
        err(r#"{"type":"order_placed","id":""}"#)
            .starts_with("invalid `id` attribute: must not be empty")
    );
    assert!(
        err(r#"{"type":"order_placed","data":{"order_id":1}}"#)
            .starts_with("`data` does not fit `order_placed` at `order_id`: invalid type"),
        "{}",
        err(r#"{"type":"order_placed","data":{"order_id":1}}"#)
    );
    assert!(serde_json::from_str::<Envelope<OrderPlaced>>(r#"{"type":"x"} x"#).is_err());
}

// ---------------------------------------------------------------------------------------------
// What encoding refuses

#[test]
fn non_finite_floats_fail_at_encode_naming_the_field() {
    for (total, price, field, shown) in [
        (f64::NAN, 1.0, "data.total", "NaN"),
        (f64::INFINITY, 1.0, "data.total", "inf"),
        (1.0, f32::NEG_INFINITY, "data.items[1].price", "-inf"),
    ] {
        let envelope = Envelope::new(order(total, price));
        let err = envelope.encode().unwrap_err();
        assert_eq!(err.field(), field);
        assert_eq!(
            err.to_string(),
            format!(
                "event could not be encoded as JSON: `{field}`: `{shown}` is not a JSON number (serde_json would write it as null)"
            )
        );
        let mut buf = b"prefix".to_vec();
        assert!(envelope.encode_into(&mut buf).is_err());
        assert_eq!(buf, b"prefix");
        let serde = serde_json::to_string(&envelope).unwrap_err().to_string();
        assert!(serde.contains(&format!("`{field}`")), "{serde}");
        let value = envelope.clone().map(|_| json!({"n": 1}));
        assert!(value.encode_untyped().is_ok());
    }
}

#[test]
fn non_finite_floats_inside_values_are_refused_too() {
    #[derive(Serialize, Deserialize)]
    struct Reading(std::collections::BTreeMap<String, Option<Vec<f64>>>);
    impl Event for Reading {
        const TYPE: &'static str = "reading";
        const CHANNEL: &'static str = "events:reading";
    }
    let data = Reading([("probe".to_owned(), Some(vec![1.0, f64::NAN]))].into());
    let err = Envelope::new(data).encode().unwrap_err();
    assert_eq!(err.field(), "data.probe[1]");
    let err = Envelope::new(Reading(Default::default()))
        .map(|_| f64::NAN)
        .encode_untyped()
        .unwrap_err();
    assert_eq!(err.field(), "data");
}

#[test]
fn ids_receivers_refuse_fail_at_encode() {
    let envelope = Envelope::new(order(1.0, 1.0)).with_id("");
    let err = envelope.encode().unwrap_err();
    assert_eq!(err.field(), "id");
    assert_eq!(
        err.to_string(),
        "event could not be encoded as JSON: `id`: must not be empty"
    );
    let serde = serde_json::to_string(&envelope).unwrap_err().to_string();
    assert_eq!(serde, err.to_string());
    // Anything else non-empty reads back as it was written.
    for id in [" ", "42", "\"quoted\"", "é"] {
        let bytes = Envelope::new(order(1.0, 1.0)).with_id(id).encode().unwrap();
        assert_eq!(Envelope::<OrderPlaced>::decode(&bytes).unwrap().id(), id);
    }
}

// ---------------------------------------------------------------------------------------------
// Content type

fn with_content_type(content_type: &str, data: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{ID}","source":"s","type":"note","time":"2026-11-21T07:11:00.123456Z","datacontenttype":"{content_type}","data":{data}}}"#
    )
}

#[test]
fn non_json_data_is_refused_for_typed_events() {
    for content_type in [
        "application/xml",
        "text/plain",
        "application/octet-stream",
        "json",
    ] {
        let input = with_content_type(content_type, r#""<note>hi</note>""#);
        let expected = DecodeError::ContentType {
            content_type: content_type.to_owned(),
        };
        let err = Envelope::<Note>::decode(input.as_bytes()).unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(
            err.to_string(),
            format!("data is `{content_type}`, not JSON")
        );
        let raw = RawEnvelope::parse(input.as_bytes()).expect("parsing keeps it");
        assert_eq!(raw.decode::<Note>().unwrap_err(), expected);
        assert_eq!(raw.decode_data::<Note>().unwrap_err(), expected);
        let serde = serde_json::from_str::<Envelope<Note>>(&input).unwrap_err();
        assert!(
            serde.to_string().starts_with(&expected.to_string()),
            "{serde}"
        );
        // The untyped paths keep everything.
        let value = raw.to_value().unwrap();
        assert_eq!(value.data(), &json!("<note>hi</note>"));
        assert_eq!(value.datacontenttype(), content_type);
        let value: Envelope<Value> = serde_json::from_str(&input).unwrap();
        assert_eq!(value.data(), &json!("<note>hi</note>"));
        assert_eq!(
            String::from_utf8(raw.encode().unwrap()).unwrap(),
            input,
            "relayed as it came"
        );
    }
}

#[test]
fn every_json_content_type_is_accepted() {
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "text/json",
        "application/cloudevents+json",
        "application/vnd.acme.note+JSON;v=2",
        "",
    ] {
        let input = with_content_type(content_type, r#""hi""#);
        let envelope = Envelope::<Note>::decode(input.as_bytes()).unwrap();
        assert_eq!(envelope.data(), &Note("hi".into()), "{content_type}");
        assert_eq!(
            serde_json::from_str::<Envelope<Note>>(&input).unwrap(),
            envelope
        );
    }
    // Absent is JSON.
    let input = format!(r#"{{"type":"note","id":"{ID}","data":"hi"}}"#);
    assert_eq!(
        Envelope::<Note>::decode(input.as_bytes()).unwrap().data(),
        &Note("hi".into())
    );
    assert!(Envelope::<Note>::decode(input.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Large integers

#[test]
fn integers_past_u64_are_floats_in_values_and_exact_in_raw_data() {
    let input =
        r#"{"type":"big","id":"1","data":{"n":18446744073709551616,"m":18446744073709551615}}"#;
    let raw = RawEnvelope::parse(input.as_bytes()).unwrap();
    let value = raw.to_value().unwrap();
    // The documented limit: serde_json holds integers up to u64::MAX / down to i64::MIN exactly,
    // larger ones as the nearest f64.
    assert_eq!(value.data()["m"], json!(u64::MAX));
    assert!(value.data()["n"].is_f64());
    assert_eq!(
        value.data()["n"].as_f64(),
        Some(18_446_744_073_709_551_616.0)
    );
    // The raw data keeps the digits.
    assert_eq!(
        raw.data().get(),
        r#"{"n":18446744073709551616,"m":18446744073709551615}"#
    );
    assert!(
        String::from_utf8(raw.encode().unwrap())
            .unwrap()
            .contains("18446744073709551616")
    );
}
