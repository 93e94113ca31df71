//! Envelope micro-benchmarks: encoding and decoding an envelope around a ~200-byte event
//! (through `encode` and through serde), making a new envelope (its id and time), and the
//! one-pass header read (`RawEnvelope::parse`) that the dispatcher does once per message.
//!
//! ```text
//! cargo bench --bench envelope
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventbus::{Envelope, Event, RawEnvelope};
use serde::{Deserialize, Serialize};

/// About 200 bytes of JSON data.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
    bio: String,
}

/// No data: `Envelope::new` alone is the id and the time.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ping;

fn event() -> UserCreated {
    UserCreated {
        user_id: 1001,
        name: "Ada Lovelace".to_owned(),
        email: "ada@example.com".to_owned(),
        tags: vec!["admin".to_owned(), "beta".to_owned()],
        bio: "Wrote the first program for the Analytical Engine, 1843; \
              notes on Menabrea's memoir."
            .to_owned(),
    }
}

fn envelope() -> Envelope<UserCreated> {
    Envelope::new(event())
        .with_source("accounts")
        .with_correlation_id("order-77")
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
}

fn benches(c: &mut Criterion) {
    let envelope = envelope();
    let bytes = envelope.encode().expect("encodes");
    let data_len = serde_json::to_vec(envelope.data()).expect("encodes").len();
    eprintln!("envelope: {} bytes, data: {data_len} bytes", bytes.len());

    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(&envelope).encode().expect("encodes"));
    });
    g.bench_function("encode_into (reused buffer)", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            black_box(&envelope).encode_into(&mut buf).expect("encodes");
            black_box(buf.len())
        });
    });
    g.bench_function("serde_json::to_vec (Serialize)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&envelope)).expect("encodes"));
    });
    g.bench_function("Envelope::new (id and time)", |b| {
        b.iter(|| Envelope::new(black_box(Ping)));
    });
    g.bench_function("new + encode", |b| {
        b.iter(|| {
            Envelope::new(black_box(event()))
                .with_source("accounts")
                .encode()
                .expect("encodes")
        });
    });
    g.bench_function("RawEnvelope::parse", |b| {
        b.iter(|| RawEnvelope::parse(black_box(&bytes)).expect("parses"));
    });
    let raw = RawEnvelope::parse(&bytes).expect("parses");
    g.bench_function("RawEnvelope::decode (data only)", |b| {
        b.iter(|| black_box(&raw).decode::<UserCreated>().expect("decodes"));
    });
    g.bench_function("Envelope::decode (parse + data)", |b| {
        b.iter(|| Envelope::<UserCreated>::decode(black_box(&bytes)).expect("decodes"));
    });
    g.bench_function("serde_json data only (reference)", |b| {
        let data = serde_json::to_vec(envelope.data()).expect("encodes");
        b.iter(|| serde_json::from_slice::<UserCreated>(black_box(&data)).expect("decodes"));
    });
    g.finish();
}

criterion_group! {
    name = envelope_benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(envelope_benches);
