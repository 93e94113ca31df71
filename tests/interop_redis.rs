//! Interoperability over a real redis-server: what other publishers put on a channel reaches
//! typed Rust handlers, what the bus publishes is readable by a Python service using redis-py,
//! and messages that are not ours are reported and dropped. Each test runs its own server.

use std::time::Duration;

use eventbus::{DecodeError, Envelope, Event, EventBus, Failure};
use eventbus_suite::python::{finish_peer, peer, python_with_redis};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Seen, wait_for};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
    email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order_placed", version = 2)]
struct OrderPlaced {
    order_id: String,
    user_id: u64,
    total: f64,
}

const WAIT: Duration = Duration::from_secs(10);

/// What a handler saw of one envelope.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    data: UserCreated,
    id: String,
    /// `time` as RFC 3339 (chrono's `to_rfc3339`, so `+00:00` says it is UTC).
    time: String,
    source: String,
    event_type: String,
}

/// A bus on `url` whose one handler records every `UserCreated` envelope, and the failures
/// reported to its error hook.
async fn recording_bus(url: &str) -> (EventBus, Seen<Received>, Seen<Failure>) {
    let seen = Seen::new();
    let failures = Seen::new();
    let (s, f) = (seen.clone(), failures.clone());
    let bus = EventBus::builder()
        .service("interop-test")
        .on_error(move |failure| f.push(failure.clone()))
        .handler(move |e: Envelope<UserCreated>| {
            let s = s.clone();
            async move {
                s.push(Received {
                    id: e.id().to_owned(),
                    time: e.time().to_rfc3339(),
                    source: e.source().to_owned(),
                    event_type: e.event_type().to_owned(),
                    data: e.into_data(),
                })
            }
        })
        .connect(url)
        .await
        .expect("connect to the test's redis-server");
    (bus, seen, failures)
}

fn ada() -> UserCreated {
    UserCreated {
        user_id: 1001,
        name: "Ada".into(),
        email: "ada@example.com".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_cloudevents_envelope_reaches_a_typed_handler() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let (bus, seen, failures) = recording_bus(&server.url()).await;
    let envelope = json!({
        "specversion": "1.0",
        "id": "0193a5b0-7e1f-7c3a-9d2e-4f5a6b7c8d9e",
        "source": "billing-cli",
        "type": "user_created",
        "time": "2026-11-21T08:11:00.123456+01:00",
        "datacontenttype": "application/json",
        "data": {"user_id": 1001, "name": "Ada", "email": "ada@example.com"},
        "correlationid": "c-42",
    })
    .to_string();
    let receivers = server.cli(&["PUBLISH", "events:user_created", &envelope]);
    assert_eq!(receivers.trim(), "1", "the bus is the one subscriber");
    assert!(
        wait_for(WAIT, || seen.len() == 1).await,
        "handler never ran"
    );
    assert_eq!(
        seen.snapshot()[0],
        Received {
            data: ada(),
            id: "0193a5b0-7e1f-7c3a-9d2e-4f5a6b7c8d9e".into(),
            time: "2026-11-21T07:11:00.123456+00:00".into(),
            source: "billing-cli".into(),
            event_type: "user_created".into(),
        }
    );
    assert!(failures.is_empty(), "{:?}", failures.snapshot());
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_plain_shape_with_integer_id_and_zoneless_time_reaches_a_typed_handler() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let (bus, seen, failures) = recording_bus(&server.url()).await;
    let plain = r#"{"type":"user_created","data":{"user_id":1001,"name":"Ada","email":"ada@example.com"},"timestamp":"2026-11-21T07:11:00.123456","id":12345}"#;
    let receivers = server.cli(&["PUBLISH", "events:user_created", plain]);
    assert_eq!(receivers.trim(), "1");
    assert!(
        wait_for(WAIT, || seen.len() == 1).await,
        "handler never ran"
    );
    let got = seen.snapshot().remove(0);
    assert_eq!(got.data, ada());
    assert_eq!(got.id, "12345", "an integer id is read as its decimal text");
    assert_eq!(
        got.time, "2026-11-21T07:11:00.123456+00:00",
        "a zone-less timestamp is read as UTC"
    );
    assert_eq!(got.event_type, "user_created");
    assert_eq!(got.source, "", "the plain shape has no source");
    assert!(failures.is_empty(), "{:?}", failures.snapshot());
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_are_reported_with_channel_and_excerpt_then_dropped() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let (bus, seen, failures) = recording_bus(&server.url()).await;
    let plain_text = "hello from a shell script";
    let other_json = r#"{"hello":1}"#;
    let other_type =
        r#"{"type":"order_placed","data":{"order_id":"o-1","user_id":1001,"total":9.5}}"#;
    let not_an_object = "[1,2,3]";
    let wrong_data = r#"{"type":"user_created","data":{"user_id":"not a number"}}"#;
    for payload in [
        plain_text,
        other_json,
        other_type,
        not_an_object,
        wrong_data,
    ] {
        assert_eq!(
            server
                .cli(&["PUBLISH", "events:user_created", payload])
                .trim(),
            "1"
        );
    }
    let valid = Envelope::new(ada()).with_source("after-the-noise");
    let valid_id = valid.id().to_owned();
    let bytes = String::from_utf8(valid.encode().unwrap()).unwrap();
    assert_eq!(
        server
            .cli(&["PUBLISH", "events:user_created", &bytes])
            .trim(),
        "1"
    );

    assert!(
        wait_for(WAIT, || seen.len() == 1).await,
        "the valid event after the noise was delivered"
    );
    assert!(
        wait_for(WAIT, || failures.len() == 4).await,
        "{:?}",
        failures.snapshot()
    );
    let got = seen.snapshot().remove(0);
    assert_eq!(got.id, valid_id);
    assert_eq!(got.source, "after-the-noise");
    assert_eq!(got.data, ada());

    let decode: Vec<_> = failures
        .snapshot()
        .into_iter()
        .map(|f| match f {
            Failure::Decode(d) => d,
            other => panic!("expected only decode failures, got {other}"),
        })
        .collect();
    assert_eq!(decode.len(), 4, "{decode:#?}");
    for (d, payload) in decode
        .iter()
        .zip([plain_text, other_json, not_an_object, wrong_data])
    {
        assert_eq!(&*d.channel, "events:user_created");
        // The first 64 bytes, marked as cut when there is more.
        let excerpt = if payload.len() <= 64 {
            payload.to_owned()
        } else {
            format!("{}…", &payload[..64])
        };
        assert_eq!(d.excerpt, excerpt);
        assert_eq!(d.len, payload.len());
        let shown = d.to_string();
        assert!(
            shown.contains("`events:user_created`") && shown.contains(&format!("{excerpt:?}")),
            "the report names the channel and quotes the message: {shown}"
        );
    }
    assert!(
        matches!(&*decode[0].error, DecodeError::NotJson(_)),
        "{:?}",
        decode[0].error
    );
    assert!(matches!(&*decode[1].error, DecodeError::MissingType));
    // An envelope of another type is not this handler's: skipped, not a failure.
    assert_eq!(bus.metrics().handlers[0].skipped, 1, "{other_type}");
    assert!(matches!(
        &*decode[2].error,
        DecodeError::NotAnObject { found: "an array" }
    ));
    assert!(
        matches!(&*decode[3].error, DecodeError::InvalidData { event_type, .. } if event_type == "user_created"),
        "{:?}",
        decode[3].error
    );
    let m = bus.metrics();
    assert_eq!(m.decode_errors, 4);
    assert_eq!(m.handlers[0].handled, 1);
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_publisher_plain_shape_reaches_rust_handlers_field_by_field() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let Some(python) = python_with_redis() else {
        return;
    };
    let (bus, seen, failures) = recording_bus(&server.url()).await;
    // What Python writes for a naive UTC datetime: `isoformat()` (no fraction when the
    // microseconds are 0) and `str()` (a space instead of `T`); and what we read them as.
    let times = [
        ("2026-11-21T07:11:00", "2026-11-21T07:11:00+00:00"),
        (
            "2026-11-21T07:11:01.000121",
            "2026-11-21T07:11:01.000121+00:00",
        ),
        (
            "2026-11-21 07:11:02.123456",
            "2026-11-21T07:11:02.123456+00:00",
        ),
    ];
    let events: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "type": "user_created",
                "data": {"user_id": 2000 + i, "name": format!("py-{i}"), "email": format!("py{i}@example.com")},
                "timestamp": times[i].0,
                "id": 12345 + i,
            })
        })
        .collect();
    let events_json = serde_json::to_string(&events).unwrap();
    let url = server.url();
    let child = peer(
        &python,
        &["publish", &url, "events:user_created", &events_json],
    );
    let lines = finish_peer(child).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        let reply: Value = serde_json::from_str(line).unwrap();
        assert_eq!(reply, json!({"published": 12345 + i, "receivers": 1}));
    }

    assert!(
        wait_for(WAIT, || seen.len() == 3).await,
        "got {}",
        seen.len()
    );
    for (i, got) in seen.snapshot().into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            got.data,
            UserCreated {
                user_id: 2000 + i,
                name: format!("py-{i}"),
                email: format!("py{i}@example.com"),
            }
        );
        assert_eq!(got.id, (12345 + i).to_string());
        assert_eq!(got.time, times[i as usize].1);
        assert_eq!(got.event_type, "user_created");
        assert_eq!(got.source, "");
    }
    assert!(failures.is_empty(), "{:?}", failures.snapshot());
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_listener_reads_what_the_rust_bus_publishes() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let Some(python) = python_with_redis() else {
        return;
    };
    let url = server.url();
    let mut child = peer(&python, &["listen", &url, "events:order_placed", "2"]);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the Python peer subscribed within 20 s")
        .unwrap();
    assert_eq!(first.as_deref(), Some("ready"));

    let bus = EventBus::builder()
        .service("orders")
        .connect(&url)
        .await
        .unwrap();
    let first_order = OrderPlaced {
        order_id: "o-1".into(),
        user_id: 1001,
        total: 99.95,
    };
    let pinned_time = Envelope::new(first_order.clone())
        .with_time(
            "2026-11-21T07:11:00.123456Z"
                .parse()
                .expect("an RFC 3339 time"),
        )
        .with_correlation_id("checkout-7");
    let r1 = bus.publish_envelope(pinned_time).await.unwrap();
    assert_eq!(r1.receivers, 1, "the Python peer is subscribed");
    let second_order = OrderPlaced {
        order_id: "o-2".into(),
        user_id: 1002,
        total: 5.0,
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let r2 = bus.publish(second_order.clone()).await.unwrap();
    assert_eq!(r2.receivers, 1);

    let mut read = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the Python peer answered within 20 s")
        .unwrap()
    {
        read.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the Python peer exited")
        .unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(
        status.success(),
        "python failed: {status}\n{read:?}\n{stderr}"
    );
    assert_eq!(read.len(), 3, "two events, then done: {read:?}");
    assert_eq!(read[2], "done");

    let one: Value = serde_json::from_str(&read[0]).unwrap();
    assert_eq!(one["channel"], "events:order_placed");
    assert_eq!(one["type"], "order_placed");
    assert_eq!(one["data"], serde_json::to_value(&first_order).unwrap());
    assert_eq!(one["id"], r1.id.as_str());
    assert_eq!(one["time"], "2026-11-21T07:11:00.123456Z");
    assert_eq!(one["time_utc_offset_seconds"], 0.0);
    assert_eq!(one["time_epoch_micros"], 1_795_245_060_123_456_i64);
    assert_eq!(one["source"], "orders");
    assert_eq!(one["specversion"], "1.0");
    assert_eq!(one["dataversion"], "2");

    let two: Value = serde_json::from_str(&read[1]).unwrap();
    assert_eq!(two["type"], "order_placed");
    assert_eq!(two["data"], serde_json::to_value(&second_order).unwrap());
    assert_eq!(two["id"], r2.id.as_str());
    assert_eq!(two["source"], "orders");
    assert_eq!(two["specversion"], "1.0");
    assert_eq!(two["time_utc_offset_seconds"], 0.0);
    let micros = two["time_epoch_micros"].as_i64().unwrap();
    let before = before.as_micros() as i64;
    assert!(
        (before - 1_000_000..before + 5_000_000).contains(&micros),
        "the time Python read ({micros}) is the publish time ({before})"
    );
    bus.shutdown().await.unwrap();
}
