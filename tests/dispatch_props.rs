//! Arbitrary bytes through the whole receive path — transport, envelope parsing, decoding
//! once per type, routing to typed, untyped and raw handlers — never panic, never stop the
//! bus, and are counted; the next valid event still arrives.

use std::time::Duration;

use eventbus::{Envelope, Event, EventBus, Failure, HandlerOptions, Message, Topic};
use eventbus_suite::{Seen, wait_for};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Probe {
    n: u64,
    label: String,
}

fn payloads() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        (
            any::<u64>(),
            "[a-z]{0,8}",
            prop_oneof![Just("probe"), Just("other"), Just("")]
        )
            .prop_map(|(n, label, ty)| {
                format!(r#"{{"type":"{ty}","id":{n},"data":{{"n":"{label}","label":{n}}}}}"#)
                    .into_bytes()
            }),
        "\\{\"type\":\"probe\",\"data\":[ -~]{0,60}\\}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_messages_never_break_dispatch(batch in proptest::collection::vec(payloads(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let typed = Seen::new();
            let untyped = Seen::new();
            let raw = Seen::new();
            let failures = Seen::new();
            let (t, u, r, f) = (typed.clone(), untyped.clone(), raw.clone(), failures.clone());
            let bus = EventBus::builder()
                .on_error(move |failure: &Failure| f.push(failure.to_string()))
                .handler_with(
                    move |p: Probe| {
                        let t = t.clone();
                        async move { t.push(p.n) }
                    },
                    HandlerOptions::new().queue_capacity(4096),
                )
                .handler_on(Topic::pattern("events:*"), move |e: Envelope<serde_json::Value>| {
                    let u = u.clone();
                    async move { u.push(e.event_type().to_owned()) }
                })
                .handler_on(Topic::channel("events:probe"), move |m: Message| {
                    let r = r.clone();
                    async move { r.push(m.payload.len()) }
                })
                .connect("memory://")
                .await
                .unwrap();
            for payload in &batch {
                bus.publish_raw("events:probe", payload.clone()).await.unwrap();
            }
            bus.publish(Probe { n: u64::MAX, label: "last".into() }).await.unwrap();
            let n = batch.len() + 1;
            assert!(wait_for(Duration::from_secs(10), || raw.len() == n).await, "raw handler sees every message");
            assert!(wait_for(Duration::from_secs(10), || typed.snapshot().last() == Some(&u64::MAX)).await);
            let m = bus.metrics();
            // Everything the typed handler did not get was counted: a decode error, or skipped
            // when it was an envelope of another type.
            let typed_got = typed.len() as u64;
            let probe_errors = m.handlers[0].decode_errors + m.handlers[0].skipped;
            assert_eq!(typed_got + probe_errors, n as u64, "{m:#?}");
            assert!(failures.len() as u64 >= probe_errors.min(1));
            bus.shutdown().await.unwrap();
        });
    }
}
