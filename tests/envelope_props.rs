//! Properties of the envelope: every event value survives encode → decode (and serde, which
//! writes the same bytes and accepts the same messages), and no input makes parsing or decoding
//! panic.

use eventbus::{Envelope, Event, RawEnvelope};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    text: String,
    tags: Vec<String>,
    count: u64,
    delta: i64,
    ratio: f64,
    maybe: Option<String>,
    nested: Inner,
    more: Option<Vec<Inner>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    flag: bool,
    small: i32,
    values: Vec<f64>,
    label: Option<String>,
}

impl Event for Sample {
    const TYPE: &'static str = "sample";
    const VERSION: u32 = 3;
    const CHANNEL: &'static str = "events:sample";
}

/// 256 cases, so the suite stays fast; `PROPTEST_CASES=N` runs more.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

/// Finite floats of every kind: normal, subnormal, zero, of either sign.
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// Text with quotes, backslashes, control characters and any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\/\\n\\t\\u{0}\\u{1f}\\u{7f}a-zé漢🦀\\u{2028}\\u{fffd}]{0,16}",
    ]
}

fn inner() -> impl Strategy<Value = Inner> {
    (
        any::<bool>(),
        any::<i32>(),
        prop::collection::vec(finite(), 0..4),
        prop::option::of(text()),
    )
        .prop_map(|(flag, small, values, label)| Inner {
            flag,
            small,
            values,
            label,
        })
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        text(),
        prop::collection::vec(text(), 0..4),
        any::<u64>(),
        any::<i64>(),
        finite(),
        prop::option::of(text()),
        inner(),
        prop::option::of(prop::collection::vec(inner(), 0..3)),
    )
        .prop_map(
            |(text, tags, count, delta, ratio, maybe, nested, more)| Sample {
                text,
                tags,
                count,
                delta,
                ratio,
                maybe,
                nested,
                more,
            },
        )
}

/// The attributes with their own accessors, which extensions may not be named after.
const RESERVED: [&str; 11] = [
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
];

/// An extension name and a value CloudEvents allows.
fn extension() -> impl Strategy<Value = (String, Value)> {
    (
        "[a-z][a-z0-9]{0,10}"
            .prop_filter("a reserved name", |name| !RESERVED.contains(&name.as_str())),
        prop_oneof![
            text().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
    )
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        text().prop_map(Value::from),
        // Strings that look like the attributes' forms.
        date_time().prop_map(Value::from),
        Just(Value::from("1.0")),
        Just(Value::from("sample")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Member names a message might have: the attributes, near misses, and anything.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "timestamp",
            "datacontenttype",
            "data",
            "dataversion",
            "correlationid",
            "causationid",
            "traceparent",
            "data_base64",
            "subject",
            "Type",
        ])
        .prop_map(str::to_owned),
        text(),
    ]
}

/// Values an attribute could well have.
fn plausible() -> impl Strategy<Value = Value> {
    prop_oneof![
        date_time().prop_map(Value::from),
        "[a-z0-9-]{1,12}".prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (0.0..2e9_f64).prop_map(Value::from),
        Just(Value::from("1.0")),
        Just(Value::Null),
    ]
}

/// Strings in and around the date-time forms `time` accepts.
fn date_time() -> impl Strategy<Value = String> {
    "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?"
}

/// A JSON object shaped like a message, then perhaps damaged.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    let members = (
        prop::option::weighted(0.9, text()),
        prop::collection::vec(
            prop_oneof![
                3 => (text(), json()),
                1 => (member_name(), json()),
                2 => (member_name(), plausible()),
            ],
            0..8,
        ),
    );
    let object = members.prop_map(|(event_type, members)| {
        let mut map = Map::new();
        if let Some(event_type) = event_type {
            map.insert("type".to_owned(), Value::String(event_type));
        }
        for (name, value) in members {
            map.insert(name, value);
        }
        serde_json::to_vec(&Value::Object(map)).expect("a value serializes")
    });
    // A quarter of them get a few bytes overwritten.
    let damage = prop::option::weighted(
        0.25,
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    )
    .prop_map(Option::unwrap_or_default);
    (object, damage).prop_map(|(mut bytes, damage)| {
        for (at, byte) in damage {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
        }
        bytes
    })
}

/// Floats must come back bit for bit: the workspace enables serde_json's `float_roundtrip`.
fn close(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || a == b
}

fn same_floats(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y))
}

fn same_inner(a: &Inner, b: &Inner) -> bool {
    a.flag == b.flag
        && a.small == b.small
        && a.label == b.label
        && same_floats(&a.values, &b.values)
}

fn same_sample(a: &Sample, b: &Sample) -> bool {
    a.text == b.text
        && a.tags == b.tags
        && a.count == b.count
        && a.delta == b.delta
        && close(a.ratio, b.ratio)
        && a.maybe == b.maybe
        && same_inner(&a.nested, &b.nested)
        && match (&a.more, &b.more) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_inner(p, q))
            }
            _ => false,
        }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if close(p, q))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, p), (l, q))| k == l && same_value(p, q))
        }
        _ => a == b,
    }
}

fn without_extensions<T: Clone>(envelope: &Envelope<T>) -> Envelope<()> {
    let (mut header, _) = envelope.clone().into_parts();
    let names: Vec<String> = header.extensions().keys().cloned().collect();
    for name in names {
        header.remove_extension(&name);
    }
    header
}

/// Equal headers, and extensions and data equal but for the last bits of floats.
fn assert_same<T: Clone + std::fmt::Debug>(
    a: &Envelope<T>,
    b: &Envelope<T>,
    same: impl Fn(&T, &T) -> bool,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(without_extensions(a), without_extensions(b));
    let extensions = |e: &Envelope<T>| Value::Object(e.extensions().clone());
    prop_assert!(
        same_value(&extensions(a), &extensions(b)),
        "{:?}\n!=\n{:?}",
        a.extensions(),
        b.extensions()
    );
    prop_assert!(
        same(a.data(), b.data()),
        "{:?}\n!=\n{:?}",
        a.data(),
        b.data()
    );
    Ok(())
}

/// Parses and decodes every way the bus does; only panics would fail.
fn read_every_way(bytes: &[u8]) {
    if let Ok(raw) = RawEnvelope::parse(bytes) {
        let _ = raw.decode::<Sample>();
        let _ = raw.decode_data::<Sample>();
        let _ = raw.to_value();
        let _ = raw.encode();
        let _ = raw.clone().into_parts();
    }
    let _ = Envelope::<Sample>::decode(bytes);
    let _ = serde_json::from_slice::<Envelope<Sample>>(bytes);
    let _ = serde_json::from_slice::<Envelope<Value>>(bytes);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_event_round_trips(
        data in sample(),
        source in "[a-z./-]{1,20}",
        correlation in prop::option::of(text()),
        extensions in prop::collection::vec(extension(), 0..4),
    ) {
        let mut envelope = Envelope::new(data).with_source(source);
        if let Some(id) = correlation {
            envelope = envelope.with_correlation_id(id);
        }
        for (name, value) in extensions {
            envelope = envelope.with_extension(name, value).expect("a valid extension");
        }
        let bytes = envelope.encode().expect("encodes");
        let decoded = Envelope::<Sample>::decode(&bytes).expect("decodes");
        assert_same(&decoded, &envelope, same_sample)?;
        // serde is the same contract: the same bytes out, the same envelope back.
        prop_assert_eq!(&serde_json::to_vec(&envelope).expect("serializes"), &bytes);
        let serde: Envelope<Sample> = serde_json::from_slice(&bytes).expect("deserializes");
        assert_same(&serde, &envelope, same_sample)?;
        // Through the raw path and the untyped path too.
        let raw = RawEnvelope::parse(&bytes).expect("parses");
        assert_same(&raw.decode::<Sample>().expect("decodes"), &envelope, same_sample)?;
        prop_assert_eq!(&serde_json::to_vec(&raw).expect("serializes"), &bytes);
        prop_assert_eq!(raw.encode().expect("re-encodes"), bytes);
        let untyped = raw.to_value().expect("a value").encode_untyped().expect("encodes");
        let decoded = Envelope::<Sample>::decode(&untyped).expect("decodes");
        assert_same(&decoded, &envelope, same_sample)?;
    }

    #[test]
    fn whatever_parses_reads_back_the_same(bytes in message_bytes()) {
        // serde accepts exactly what parsing accepts.
        let parsed = RawEnvelope::parse(&bytes);
        prop_assert_eq!(serde_json::from_slice::<RawEnvelope>(&bytes).is_ok(), parsed.is_ok());
        prop_assert_eq!(
            serde_json::from_slice::<Envelope<Value>>(&bytes).is_ok(),
            parsed.as_ref().is_ok_and(|raw| raw.to_value().is_ok())
        );
        // Decoding is idempotent through our own encoding: decode(encode(decode(x))) == decode(x).
        if let Ok(raw) = RawEnvelope::parse(&bytes)
            && let Ok(mut value) = raw.to_value()
        {
            let again = RawEnvelope::parse(&value.encode_untyped().expect("encodes"))
                .expect("our output parses");
            // The one thing filled in on the way: an absent source is written as "eventbus".
            if value.source().is_empty() {
                value = value.with_source("eventbus");
            }
            assert_same(&again.to_value().expect("a value"), &value, same_value)?;
        }
        read_every_way(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read_every_way(&bytes);
    }

    #[test]
    fn json_ish_text_never_panics(text in "[\\[\\]{}\":,0-9a-zA-Z\\\\ .eE+\\-\u{e9}\u{ff}]{0,200}") {
        read_every_way(text.as_bytes());
        // Inside a message, around `data` and in an attribute.
        read_every_way(format!(r#"{{"type":"sample","data":{text}}}"#).as_bytes());
        read_every_way(format!(r#"{{"type":"sample","time":{text},"data":{{}}}}"#).as_bytes());
    }
}

/// Floats must survive the wire bit for bit (`OrderPlaced.total`); serde_json parses some of
/// them one ulp off unless its `float_roundtrip` feature is enabled, as the workspace does.
#[test]
fn floats_round_trip_exactly() {
    for f in [
        -7.750_778_457_894_169e-221,
        0.1,
        99.99,
        1e300,
        5e-324,
        f64::MAX,
    ] {
        let envelope = Envelope::new(Sample {
            text: String::new(),
            tags: vec![],
            count: 0,
            delta: 0,
            ratio: f,
            maybe: None,
            nested: Inner {
                flag: false,
                small: 0,
                values: vec![f],
                label: None,
            },
            more: None,
        });
        let decoded = Envelope::<Sample>::decode(&envelope.encode().unwrap()).unwrap();
        assert_eq!(decoded.data().ratio.to_bits(), f.to_bits(), "{f:e}");
    }
}
