//! Arbitrary bytes through the whole receive path — transport, envelope parsing, decoding
//! once per type, routing to typed, untyped and raw handlers — never panic, never stop the
//! bus, and are counted; the next valid event still arrives.

use std::time::Duration;

use eventbus::{Envelope, Event, EventBus, Failure, HandlerOptions, Message, RawEnvelope, Topic};
use eventbus_suite::{Seen, wait_for};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Probe {
    n: u64,
    label: String,
}

const WAIT: Duration = Duration::from_secs(10);

fn payloads() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        // The plain shape, with the fields of the right types or swapped.
        (
            any::<u64>(),
            "[a-z]{0,8}",
            prop_oneof![Just("probe"), Just("other"), Just("")],
            any::<bool>(),
        )
            .prop_map(|(n, label, ty, swapped)| {
                let data = if swapped {
                    format!(r#"{{"n":"{label}","label":{n}}}"#)
                } else {
                    format!(r#"{{"n":{n},"label":"{label}"}}"#)
                };
                format!(r#"{{"type":"{ty}","id":{n},"data":{data}}}"#).into_bytes()
            }),
        "\\{\"type\":\"probe\",\"data\":[ -~]{0,60}\\}".prop_map(String::into_bytes),
    ]
}

/// What the bus should make of a batch, worked out from the envelope decoder alone.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    /// `n` of each message the `Probe` handler gets, in order.
    typed: Vec<u64>,
    /// The type of each message the `events:*` pattern handler gets, in order.
    untyped: Vec<String>,
    /// Decode reports for messages that are no envelope at all: one per route (channel and
    /// pattern).
    bad_envelopes: usize,
    /// Decode reports for `probe` envelopes whose data is no `Probe`.
    bad_probes: usize,
    /// Envelopes of another type on the `Probe` channel: skipped by its handler, not reported.
    skipped: usize,
}

fn expected(batch: &[Vec<u8>]) -> Expected {
    let mut e = Expected::default();
    for payload in batch {
        let Ok(raw) = RawEnvelope::parse(payload) else {
            e.bad_envelopes += 2;
            continue;
        };
        match raw.to_value() {
            Ok(value) => e.untyped.push(value.event_type().to_owned()),
            Err(_) => e.bad_envelopes += 1,
        }
        if raw.event_type() != "probe" {
            e.skipped += 1;
            continue;
        }
        match Envelope::<Probe>::decode(payload) {
            Ok(probe) => e.typed.push(probe.data().n),
            Err(_) => e.bad_probes += 1,
        }
    }
    e
}

/// The decode reports, split as in [`Expected`]: no event type (a bad envelope) or `probe`.
fn decode_reports(failures: &[Failure]) -> (usize, usize) {
    let mut bad_envelopes = 0;
    let mut bad_probes = 0;
    for f in failures {
        match f {
            Failure::Decode(d) if d.event_type.is_none() => bad_envelopes += 1,
            Failure::Decode(d) if d.event_type.as_deref() == Some("probe") => bad_probes += 1,
            other => panic!("unexpected failure: {other}"),
        }
    }
    (bad_envelopes, bad_probes)
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
                .on_error(move |failure: &Failure| f.push(failure.clone()))
                .handler_with(HandlerOptions::new().name("typed").queue_capacity(4096), move |p: Probe| {
                        let t = t.clone();
                        async move { t.push(p.n) }
                    })
                .handler_with(HandlerOptions::new().name("untyped").topic(Topic::pattern("events:*")), move |e: Envelope<serde_json::Value>| {
                        let u = u.clone();
                        async move { u.push(e.event_type().to_owned()) }
                    })
                .handler_on(Topic::channel("events:probe"), move |m: Message| {
                    let r = r.clone();
                    async move { r.push(m.payload.to_vec()) }
                })
                .connect("memory://")
                .await
                .unwrap();
            for payload in &batch {
                bus.publish_raw("events:probe", payload.clone()).await.unwrap();
            }
            bus.publish(Probe { n: u64::MAX, label: "last".into() }).await.unwrap();

            let mut want = expected(&batch);
            want.typed.push(u64::MAX);
            want.untyped.push("probe".to_owned());
            let n = batch.len() + 1;
            let reports = want.bad_envelopes + want.bad_probes;
            let arrived = wait_for(WAIT, || {
                raw.len() == n
                    && typed.len() == want.typed.len()
                    && untyped.len() == want.untyped.len()
                    && failures.len() == reports
            })
            .await;
            // Draining: whatever else was on its way arrives before the comparison.
            bus.shutdown().await.unwrap();
            assert!(arrived, "not everything arrived within {WAIT:?}");

            let all = raw.snapshot();
            assert_eq!(&all[..batch.len()], &batch[..], "the raw handler gets every message in order");
            assert_eq!(typed.snapshot(), want.typed, "exactly the Probes, in order, once each");
            assert_eq!(untyped.snapshot(), want.untyped, "exactly the envelopes, in order, once each");
            let (bad_envelopes, bad_probes) = decode_reports(&failures.snapshot());
            assert_eq!((bad_envelopes, bad_probes), (want.bad_envelopes, want.bad_probes));

            let m = bus.metrics();
            let typed_errors = m.handler("typed").unwrap().decode_errors;
            let typed_skipped = m.handler("typed").unwrap().skipped;
            assert_eq!(typed_skipped as usize, want.skipped, "{m:#?}");
            assert_eq!(typed_errors as usize, n - want.typed.len() - want.skipped, "{m:#?}");
            assert_eq!(m.handler("untyped").unwrap().decode_errors as usize, n - want.untyped.len(), "{m:#?}");
            assert_eq!(m.decode_errors as usize, reports, "{m:#?}");
        });
    }
}
