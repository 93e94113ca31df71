//! The envelope on the wire: the exact JSON we write (wire contract v1), the shapes we read,
//! and every decode error with its message.

use eventbus::{DecodeError, Envelope, Event, RawEnvelope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserCreated {
    user_id: u64,
    name: String,
    email: String,
}

impl Event for UserCreated {
    const TYPE: &'static str = "user_created";
    const CHANNEL: &'static str = "events:user_created";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    user_id: u64,
    total: f64,
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    qty: u32,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "order_placed";
    const VERSION: u32 = 2;
    const CHANNEL: &'static str = "events:order_placed";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping;

impl Event for Ping {
    const TYPE: &'static str = "ping";
    const CHANNEL: &'static str = "events:ping";
}

const ID: &str = "0193a5c4-8f2e-7d3a-9b1c-2f4e6a8b0c1d";

/// A `DateTime<Utc>` from an RFC 3339 string, read through the envelope (the suite does not
/// depend on chrono).
macro_rules! at {
    ($time:literal) => {
        RawEnvelope::parse(concat!(r#"{"type":"t","time":""#, $time, r#""}"#).as_bytes())
            .expect("a valid time")
            .header()
            .time()
    };
}

fn ada() -> UserCreated {
    UserCreated {
        user_id: 1001,
        name: "Ada".into(),
        email: "ada@example.com".into(),
    }
}

fn order() -> OrderPlaced {
    OrderPlaced {
        order_id: "o-1".into(),
        user_id: 1001,
        total: 99.5,
        items: vec![
            Item {
                sku: "a".into(),
                qty: 1,
            },
            Item {
                sku: "b".into(),
                qty: 2,
            },
        ],
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8")
}

fn decode_err<E: Event>(input: &str) -> String {
    match Envelope::<E>::decode(input.as_bytes()) {
        Ok(_) => panic!("decoding {input} succeeded"),
        Err(e) => e.to_string(),
    }
}

fn parse_err(input: &[u8]) -> DecodeError {
    match RawEnvelope::parse(input) {
        Ok(raw) => panic!("parsing succeeded: {raw:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

#[test]
fn writes_the_wire_contract_field_for_field_in_order() {
    let envelope = Envelope::new(order())
        .with_id(ID)
        .with_time(at!("2026-11-21T07:11:00.123456Z"))
        .with_source("accounts")
        .with_correlation_id("corr-1")
        .with_causation_id("cause-1")
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_extension("tenant", "acme")
        .unwrap()
        .with_extension("attempt", 3)
        .unwrap();
    assert_eq!(
        text(envelope.encode().unwrap()),
        concat!(
            r#"{"specversion":"1.0","#,
            r#""id":"0193a5c4-8f2e-7d3a-9b1c-2f4e6a8b0c1d","#,
            r#""source":"accounts","#,
            r#""type":"order_placed","#,
            r#""time":"2026-11-21T07:11:00.123456Z","#,
            r#""datacontenttype":"application/json","#,
            r#""data":{"order_id":"o-1","user_id":1001,"total":99.5,"items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]},"#,
            r#""dataversion":"2","#,
            r#""correlationid":"corr-1","#,
            r#""causationid":"cause-1","#,
            r#""traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","#,
            r#""attempt":3,"tenant":"acme"}"#,
        )
    );
}

#[test]
fn writes_defaults_for_a_bare_envelope() {
    // No source set: "eventbus"; VERSION 1 still written; no optional attributes.
    let envelope = Envelope::new(ada())
        .with_id(ID)
        .with_time(at!("2026-01-02T03:04:05Z"));
    assert_eq!(
        text(envelope.encode().unwrap()),
        concat!(
            r#"{"specversion":"1.0","id":"0193a5c4-8f2e-7d3a-9b1c-2f4e6a8b0c1d","source":"eventbus","#,
            r#""type":"user_created","time":"2026-01-02T03:04:05.000000Z","datacontenttype":"application/json","#,
            r#""data":{"user_id":1001,"name":"Ada","email":"ada@example.com"},"dataversion":"1"}"#,
        )
    );
}

#[test]
fn new_envelopes_get_a_uuid_v7_and_a_utc_microsecond_time() {
    let json: Value = serde_json::from_slice(&Envelope::new(ada()).encode().unwrap()).unwrap();
    let id = json["id"].as_str().unwrap();
    // 8-4-4-4-12 lowercase hex, version nibble 7, variant 10xx.
    let groups: Vec<&str> = id.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(
        id.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
    assert!(groups[2].starts_with('7'), "{id}");
    assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{id}");
    let time = json["time"].as_str().unwrap();
    assert_eq!(time.len(), 27, "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
}

#[test]
fn encode_into_appends_and_leaves_the_buffer_alone_on_error() {
    #[derive(Serialize, Deserialize)]
    struct BadKeys(std::collections::BTreeMap<(u8, u8), u8>);
    impl Event for BadKeys {
        const TYPE: &'static str = "bad_keys";
        const CHANNEL: &'static str = "events:bad_keys";
    }

    let mut buf = b"prefix".to_vec();
    Envelope::new(Ping).encode_into(&mut buf).unwrap();
    assert!(buf.starts_with(b"prefix{\"specversion\":\"1.0\""));
    assert!(buf.ends_with(b"\"data\":null,\"dataversion\":\"1\"}"));

    let mut buf = b"prefix".to_vec();
    let bad = Envelope::new(BadKeys([((1, 2), 3)].into()));
    let err = bad.encode_into(&mut buf).unwrap_err();
    assert_eq!(buf, b"prefix");
    assert_eq!(
        err.to_string(),
        "event could not be encoded as JSON: `data`: key must be a string"
    );
}

#[test]
fn type_and_dataversion_come_from_the_event_type() {
    // A v1 message decoded into the current struct is written back as the current version.
    let old = r#"{"type":"order_placed","dataversion":"1","data":{"order_id":"o","user_id":1,"total":1.0,"items":[]}}"#;
    let envelope = Envelope::<OrderPlaced>::decode(old.as_bytes()).unwrap();
    assert_eq!(envelope.dataversion(), Some("1"));
    assert_eq!(envelope.version(), Some(1));
    let json: Value = serde_json::from_slice(&envelope.encode().unwrap()).unwrap();
    assert_eq!(json["dataversion"], "2");
    assert_eq!(json["type"], "order_placed");
}

// ---------------------------------------------------------------------------------------------
// Reading

#[test]
fn reads_the_plain_python_shape() {
    // json.dumps({"type": ..., "id": 42, "timestamp": datetime.utcnow().isoformat(), "data": ...})
    let python = r#"{"type": "user_created", "id": 42, "timestamp": "2026-11-21T07:11:00.123456", "data": {"user_id": 1001, "name": "Ada", "email": "ada@example.com"}}"#;
    let envelope = Envelope::<UserCreated>::decode(python.as_bytes()).unwrap();
    assert_eq!(envelope.id(), "42");
    assert_eq!(envelope.time(), at!("2026-11-21T07:11:00.123456Z"));
    assert_eq!(envelope.data(), &ada());
    assert_eq!(envelope.event_type(), "user_created");
    assert_eq!(envelope.source(), "");
    assert_eq!(envelope.specversion(), "1.0");
    assert_eq!(envelope.datacontenttype(), "application/json");
    assert_eq!(envelope.dataversion(), None);
    assert_eq!(envelope.version(), None);
    assert!(envelope.extensions().is_empty());
    // Written back as a full CloudEvent; `timestamp` became `time`.
    let json: Value = serde_json::from_slice(&envelope.encode().unwrap()).unwrap();
    assert_eq!(json["id"], "42");
    assert_eq!(json["time"], "2026-11-21T07:11:00.123456Z");
    assert_eq!(json["source"], "eventbus");
    assert!(json.get("timestamp").is_none());
}

#[test]
fn reads_every_timestamp_form_python_writes() {
    let cases = [
        // str(datetime.utcnow()): space separator.
        (
            json!("2026-11-21 07:11:00.123456"),
            at!("2026-11-21T07:11:00.123456Z"),
        ),
        // isoformat() when microsecond == 0: no fraction.
        (json!("2026-11-21T07:11:00"), at!("2026-11-21T07:11:00Z")),
        // datetime.now(timezone.utc).isoformat(): an offset.
        (
            json!("2026-11-21T08:11:00.5+01:00"),
            at!("2026-11-21T07:11:00.5Z"),
        ),
        // time.time(): float seconds; int(time.time()): integer seconds.
        (
            json!(1_795_245_060.123_456),
            at!("2026-11-21T07:11:00.123456Z"),
        ),
        (json!(1_795_245_060_u64), at!("2026-11-21T07:11:00Z")),
    ];
    for (timestamp, expected) in cases {
        let message = json!({"type": "ping", "id": "x", "timestamp": timestamp});
        let envelope = Envelope::<Ping>::decode(message.to_string().as_bytes()).unwrap();
        assert_eq!(envelope.time(), expected, "{timestamp}");
        // The same forms are accepted under `time`.
        let message = json!({"type": "ping", "id": "x", "time": timestamp});
        let envelope = Envelope::<Ping>::decode(message.to_string().as_bytes()).unwrap();
        assert_eq!(envelope.time(), expected, "{timestamp}");
    }
}

#[test]
fn fills_in_what_a_minimal_message_lacks() {
    let before = Envelope::new(Ping).time();
    let envelope = Envelope::<Ping>::decode(br#"{"type":"ping"}"#).unwrap();
    let after = Envelope::new(Ping).time();
    assert_eq!(envelope.data(), &Ping);
    assert!(before <= envelope.time() && envelope.time() <= after);
    assert_eq!(envelope.id().len(), 36);
    assert_eq!(&envelope.id()[14..15], "7");
    assert_eq!(envelope.source(), "");

    // A missing `data` is null: it fits an Option too.
    let raw = RawEnvelope::parse(br#"{"type":"ping"}"#).unwrap();
    assert_eq!(raw.data().get(), "null");
    assert_eq!(raw.to_value().unwrap().into_data(), Value::Null);
    // The generated id is made once per message, not once per decode.
    assert_eq!(
        raw.decode::<Ping>().unwrap().id(),
        raw.to_value().unwrap().id()
    );
}

#[test]
fn reads_a_cloudevent_written_by_hand_in_redis_cli() {
    // PUBLISH events:user_created '...' as a person types it: spaces, newlines, another order,
    // optional CloudEvents attributes and extensions.
    let message = r#"{
        "specversion" : "1.0",
        "type" : "user_created",
        "source" : "/billing/cli",
        "subject" : "user/1001",
        "id" : "A234-1234-1234",
        "time" : "2018-04-05T17:31:00Z",
        "comexampleextension1" : "value",
        "comexampleothervalue" : 5,
        "datacontenttype" : "application/json",
        "dataversion" : 1,
        "correlationid" : "c-9",
        "data" : { "email" : "ada@example.com", "name" : "Ada", "user_id" : 1001 }
    }"#;
    let envelope = Envelope::<UserCreated>::decode(message.as_bytes()).unwrap();
    assert_eq!(envelope.id(), "A234-1234-1234");
    assert_eq!(envelope.source(), "/billing/cli");
    assert_eq!(envelope.time(), at!("2018-04-05T17:31:00Z"));
    assert_eq!(envelope.data(), &ada());
    assert_eq!(envelope.dataversion(), Some("1"));
    assert_eq!(envelope.correlation_id(), Some("c-9"));
    assert_eq!(envelope.causation_id(), None);
    assert_eq!(envelope.traceparent(), None);
    assert_eq!(envelope.extension("subject"), Some(&json!("user/1001")));
    assert_eq!(
        envelope.extension("comexampleextension1"),
        Some(&json!("value"))
    );
    assert_eq!(envelope.extension("comexampleothervalue"), Some(&json!(5)));
    assert_eq!(envelope.extensions().len(), 3);
}

#[test]
fn unknown_attributes_round_trip() {
    let message = json!({
        "specversion": "1.0", "id": "1", "source": "py", "type": "user_created",
        "time": "2026-11-21T07:11:00Z", "dataversion": "1", "data": ada(),
        "tenant": "acme", "priority": 5, "sampled": true, "ratio": 0.25,
        // Kept even though they break the CloudEvents naming rules or value types.
        "userId": "u-1", "meta": {"a": [1, 2]}, "timestamp": "kept as is"
    });
    let first = Envelope::<UserCreated>::decode(message.to_string().as_bytes()).unwrap();
    assert_eq!(first.extensions().len(), 7);
    let bytes = first.encode().unwrap();
    let written: Value = serde_json::from_slice(&bytes).unwrap();
    for name in [
        "tenant",
        "priority",
        "sampled",
        "ratio",
        "userId",
        "meta",
        "timestamp",
    ] {
        assert_eq!(written[name], message[name], "{name}");
    }
    let second = Envelope::<UserCreated>::decode(&bytes).unwrap();
    assert_eq!(second, first);

    // The raw path writes them back too, data untouched byte for byte.
    let raw = RawEnvelope::parse(message.to_string().as_bytes()).unwrap();
    let again = RawEnvelope::parse(&raw.encode().unwrap()).unwrap();
    assert_eq!(again.data().get(), raw.data().get());
    assert_eq!(again.header(), raw.header());
}

#[test]
fn extension_names_are_validated() {
    let ok = Envelope::new(Ping)
        .with_extension("tenant", "acme")
        .and_then(|e| e.with_extension("region2", 2))
        .and_then(|e| e.with_extension("subject", "user/1"))
        .unwrap();
    assert_eq!(ok.extension("region2"), Some(&json!(2)));

    for bad in [
        "",
        "Tenant",
        "tenant_id",
        "tenant-id",
        "tenant.id",
        "ténant",
        " x",
    ] {
        let err = Envelope::new(Ping).with_extension(bad, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid extension name `{bad}`: CloudEvents attribute names are lowercase ASCII letters and digits only"
            )
        );
    }
    for reserved in [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "datacontenttype",
        "data",
        "dataversion",
        "correlationid",
        "causationid",
        "traceparent",
    ] {
        let err = Envelope::new(Ping)
            .with_extension(reserved, "x")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "extension name `{reserved}` is reserved: the envelope sets that attribute itself"
            )
        );
    }
    let err = Envelope::new(Ping)
        .with_extension("meta", json!({"a": 1}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value for extension `meta`: extension values are strings, numbers or booleans, found an object"
    );
}

#[test]
fn raw_envelope_decodes_once_per_type() {
    let message = Envelope::new(ada())
        .with_source("accounts")
        .encode()
        .unwrap();
    let raw = RawEnvelope::parse(&message).unwrap();
    assert_eq!(raw.event_type(), "user_created");
    assert_eq!(raw.decode_data::<UserCreated>().unwrap(), ada());
    let typed = raw.decode::<UserCreated>().unwrap();
    let value = raw.to_value().unwrap();
    assert_eq!(typed.id(), raw.id());
    assert_eq!(value.id(), raw.id());
    assert_eq!(value.source(), "accounts");
    assert_eq!(value.data(), &serde_json::to_value(ada()).unwrap());
    assert_eq!(
        raw.decode::<Ping>().unwrap_err(),
        DecodeError::TypeMismatch {
            expected: "ping",
            found: "user_created".into()
        }
    );
    // Forwarding the untyped envelope gives the same message back (`data`'s members in name
    // order, as serde_json::Value holds them).
    let forwarded = value.encode_untyped().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&forwarded).unwrap(),
        serde_json::from_slice::<Value>(&message).unwrap()
    );
    // The raw envelope forwards byte for byte.
    assert_eq!(raw.encode().unwrap(), message);
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn not_json() {
    assert_eq!(
        decode_err::<Ping>(r#"{"type": "#),
        "message is not JSON: EOF while parsing a value at line 1 column 9"
    );
    assert_eq!(
        decode_err::<Ping>("hello"),
        "message is not JSON: expected value at line 1 column 1"
    );
    assert_eq!(
        decode_err::<Ping>(""),
        "message is not JSON: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        decode_err::<Ping>(r#"{"type":"ping"} trailing"#),
        "message is not JSON: trailing characters at line 1 column 17"
    );
    assert!(matches!(
        parse_err(b"{'type': 'ping'}"),
        DecodeError::NotJson(_)
    ));
}

#[test]
fn not_utf8() {
    let err = parse_err(b"{\"type\":\"pi\xffng\"}");
    assert_eq!(err, DecodeError::NotUtf8 { valid_up_to: 11 });
    assert_eq!(
        err.to_string(),
        "message is not UTF-8: invalid byte at offset 11"
    );
    // Invalid UTF-8 inside `data`, which is only scanned, is caught too.
    assert_eq!(
        parse_err(b"{\"type\":\"a\",\"data\":\"\xc3\x28\"}"),
        DecodeError::NotUtf8 { valid_up_to: 20 }
    );
}

#[test]
fn not_an_object() {
    for (input, found) in [
        ("[1, 2]", "an array"),
        (r#""user_created""#, "a string"),
        ("42", "a number"),
        ("-1.5", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ] {
        assert_eq!(
            decode_err::<Ping>(input),
            format!("message is not a JSON object: found {found}")
        );
    }
}

#[test]
fn missing_type() {
    for input in [r#"{"data":{}}"#, r#"{"type":null,"data":{}}"#, "{}"] {
        assert_eq!(decode_err::<Ping>(input), "message has no `type` attribute");
    }
}

#[test]
fn type_mismatch() {
    let message = Envelope::new(ada()).encode().unwrap();
    assert_eq!(
        decode_err::<OrderPlaced>(std::str::from_utf8(&message).unwrap()),
        "event type mismatch: expected `order_placed`, found `user_created`"
    );
}

#[test]
fn unsupported_specversion() {
    assert_eq!(
        decode_err::<Ping>(r#"{"specversion":"2.0","type":"ping"}"#),
        "unsupported specversion `2.0`: this bus reads CloudEvents 1.0"
    );
    assert_eq!(
        decode_err::<Ping>(r#"{"specversion":"0.3","type":"ping"}"#),
        "unsupported specversion `0.3`: this bus reads CloudEvents 1.0"
    );
}

#[test]
fn invalid_attributes_name_the_attribute() {
    let cases = [
        (
            r#"{"type":"ping","time":"yesterday"}"#,
            "invalid `time` attribute: `yesterday` is not an RFC 3339 date-time nor an ISO 8601 date-time without zone",
        ),
        (
            r#"{"type":"ping","timestamp":"21/11/2026"}"#,
            "invalid `timestamp` attribute: `21/11/2026` is not an RFC 3339 date-time nor an ISO 8601 date-time without zone",
        ),
        (
            r#"{"type":"ping","time":{"s":1}}"#,
            "invalid `time` attribute: expected a date-time string or a number of Unix seconds, found an object",
        ),
        (
            r#"{"type":"ping","timestamp":1795245060123}"#,
            "invalid `timestamp` attribute: `1795245060123` is outside the years 0000 to 9999 (numbers are read as Unix seconds)",
        ),
        (
            r#"{"type":"ping","id":1.5}"#,
            "invalid `id` attribute: expected a string or an integer, found the number 1.5",
        ),
        (
            r#"{"type":"ping","id":true}"#,
            "invalid `id` attribute: expected a string or an integer, found a boolean",
        ),
        (
            r#"{"type":"ping","id":["a"]}"#,
            "invalid `id` attribute: expected a string or an integer, found an array",
        ),
        (
            r#"{"type":"ping","id":""}"#,
            "invalid `id` attribute: must not be empty",
        ),
        (
            r#"{"type":7}"#,
            "invalid `type` attribute: expected a string, found a number",
        ),
        (
            r#"{"type":""}"#,
            "invalid `type` attribute: must not be empty",
        ),
        (
            r#"{"type":"ping","source":42}"#,
            "invalid `source` attribute: expected a string, found a number",
        ),
        (
            r#"{"type":"ping","specversion":1.0}"#,
            "invalid `specversion` attribute: expected a string, found a number",
        ),
        (
            r#"{"type":"ping","dataversion":false}"#,
            "invalid `dataversion` attribute: expected a string or an integer, found a boolean",
        ),
        (
            r#"{"type":"ping","traceparent":1}"#,
            "invalid `traceparent` attribute: expected a string, found a number",
        ),
        (
            r#"{"type":"ping","datacontenttype":[]}"#,
            "invalid `datacontenttype` attribute: expected a string, found an array",
        ),
        (
            r#"{"type":"ping","type":"ping"}"#,
            "invalid `type` attribute: appears more than once",
        ),
        (
            r#"{"type":"ping","data":null,"data":null}"#,
            "invalid `data` attribute: appears more than once",
        ),
        (
            r#"{"type":"ping","data_base64":"AAEC"}"#,
            "invalid `data_base64` attribute: binary data is not supported: this bus reads JSON `data`",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(decode_err::<Ping>(input), message, "{input}");
        assert!(matches!(
            RawEnvelope::parse(input.as_bytes()),
            Err(DecodeError::InvalidAttribute { .. })
        ));
    }
    // Integers are read as decimal strings where that is harmless.
    let envelope =
        Envelope::<Ping>::decode(br#"{"type":"ping","id":-7,"correlationid":12,"causationid":13}"#)
            .unwrap();
    assert_eq!(envelope.id(), "-7");
    assert_eq!(envelope.correlation_id(), Some("12"));
    assert_eq!(envelope.causation_id(), Some("13"));
}

#[test]
fn data_that_does_not_fit_names_the_path() {
    assert_eq!(
        decode_err::<UserCreated>(
            r#"{"type":"user_created","data":{"user_id":"x","name":"Ada","email":"a"}}"#
        ),
        "`data` does not fit `user_created` at `user_id`: invalid type: string \"x\", expected u64"
    );
    assert_eq!(
        decode_err::<OrderPlaced>(
            r#"{"type":"order_placed","data":{"order_id":"o","user_id":1,"total":1,"items":[{"sku":"a","qty":1},{"sku":"b","qty":-2}]}}"#
        ),
        "`data` does not fit `order_placed` at `items[1].qty`: invalid value: integer `-2`, expected u32"
    );
    assert_eq!(
        decode_err::<UserCreated>(r#"{"type":"user_created","data":{"user_id":1}}"#),
        "`data` does not fit `user_created`: missing field `name`"
    );
    assert_eq!(
        decode_err::<UserCreated>(r#"{"type":"user_created"}"#),
        "`data` does not fit `user_created`: invalid type: null, expected struct UserCreated"
    );
    let raw = RawEnvelope::parse(
        br#"{"type":"user_created","data":{"user_id":1,"name":"A","email":"e","extra":true}}"#,
    )
    .unwrap();
    // Unknown fields are ignored, as serde does by default.
    assert_eq!(raw.decode_data::<UserCreated>().unwrap().user_id, 1);
    match RawEnvelope::parse(br#"{"type":"user_created","data":{"user_id":1}}"#)
        .unwrap()
        .decode::<UserCreated>()
    {
        Err(DecodeError::InvalidData {
            event_type,
            path,
            message,
        }) => {
            assert_eq!(event_type, "user_created");
            assert_eq!(path, "");
            assert_eq!(message, "missing field `name`");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_large_reads_well() {
    assert_eq!(
        DecodeError::TooLarge {
            size: 2_000_000,
            max: 1_048_576
        }
        .to_string(),
        "message is too large: 2000000 bytes, the limit is 1048576"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 100_000;
    let open = "[".repeat(depth);
    let close = "]".repeat(depth);

    // At the top, closed or not: an error either way.
    assert!(RawEnvelope::parse(open.as_bytes()).is_err());
    assert!(RawEnvelope::parse(format!("{open}{close}").as_bytes()).is_err());

    // In an extension: serde_json's recursion limit.
    let err = parse_err(format!(r#"{{"type":"ping","ext":{open}{close}}}"#).as_bytes());
    assert!(
        matches!(&err, DecodeError::NotJson(m) if m.starts_with("recursion limit exceeded")),
        "{err}"
    );

    // In `data`: scanned without recursion, refused when decoded.
    let message = format!(r#"{{"type":"ping","data":{open}{close}}}"#);
    let raw = RawEnvelope::parse(message.as_bytes()).unwrap();
    let err = raw.to_value().unwrap_err();
    assert!(
        err.to_string().contains("recursion limit exceeded"),
        "{err}"
    );
    assert!(raw.decode::<Ping>().is_err());
    let err = Envelope::<Ping>::decode(message.as_bytes()).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidData { .. }), "{err}");

    // Unclosed in `data`.
    assert!(RawEnvelope::parse(format!(r#"{{"type":"ping","data":{open}"#).as_bytes()).is_err());
    let objects = r#"{"a":"#.repeat(depth);
    assert!(RawEnvelope::parse(format!(r#"{{"type":"ping","x":{objects}1"#).as_bytes()).is_err());
}
