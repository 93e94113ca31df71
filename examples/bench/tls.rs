//! The TLS rows (`--features tls`): `rediss://` publish with 16 in flight, and end to end
//! from a publishing bus to a subscribing bus, against `redis-benchmark --tls -P 16 PUBLISH`
//! (baseline T) and a raw redis-rs client over TLS with 16 in flight (baseline U), on a
//! TLS-only redis-server. Each measure is taken in [`ROUNDS`] interleaved rounds and reported
//! as its median with its spread; the ratios are of medians.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventbus::redis::RedisOptions;
use eventbus::{EventBus, EventBusBuilder, HandlerOptions};
use eventbus_suite::redis_server::RedisServer;

use crate::table::{Row, Spread, pct, rate_text, row};
use crate::{BenchEvent, bus_publish, publish_command, raw_publish, redis_benchmark};

/// Rounds of each measure.
const ROUNDS: usize = 3;

/// A bus over `rediss://` that trusts the server's authority.
fn tls_bus(server: &RedisServer, service: &str) -> EventBusBuilder {
    let options = RedisOptions::default().tls_root_certificate(server.tls_material().ca_cert_pem());
    EventBus::builder()
        .service(service)
        .redis_options(options)
        .on_error(|_| {})
}

/// Events per second from a publishing bus to a subscribing bus over TLS, 16 publishes in
/// flight; fails when one is lost.
async fn end_to_end(server: &RedisServer, n: u64) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let subscriber = tls_bus(server, "bench-tls-subscriber")
        .handler_with(
            HandlerOptions::new().name("noop").no_timeout(),
            move |e: BenchEvent| {
                std::hint::black_box(&e);
                c.fetch_add(1, Ordering::Release);
                async {}
            },
        )
        .connect(&server.url())
        .await?;
    subscriber.ready(Duration::from_secs(10)).await?;
    let publisher = tls_bus(server, "bench-tls-publisher")
        .connect(&server.url())
        .await?;
    let started = Instant::now();
    bus_publish(&publisher, n).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            bail!(
                "{} of {n} delivered over TLS",
                count.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    publisher.shutdown().await?;
    subscriber.shutdown().await?;
    Ok(rate)
}

/// Publishes per second of a bus over TLS, 16 in flight, with the subscribing bus attached.
async fn publish(server: &RedisServer, n: u64) -> anyhow::Result<f64> {
    let publisher = tls_bus(server, "bench-tls-publisher")
        .connect(&server.url())
        .await?;
    let rate = bus_publish(&publisher, n).await?;
    publisher.shutdown().await?;
    Ok(rate)
}

/// Baseline T: redis-benchmark over TLS, 16 pipelined.
async fn benchmark(server: &RedisServer, n: u64) -> anyhow::Result<f64> {
    let material = server.tls_material();
    let ca = material.file("ca.crt");
    let extra = ["--tls", "--cacert", &ca.to_string_lossy(), "-P", "16"];
    let payload = "x".repeat(crate::PAYLOAD);
    let [rps, _, _] = redis_benchmark(server.port(), &extra, n, &publish_command(&payload)).await?;
    Ok(rps)
}

/// Baseline U: a raw redis-rs multiplexed connection over TLS, 16 in flight (the server's
/// certificate not verified: the handshake is not what is measured).
async fn raw(server: &RedisServer, n: u64) -> anyhow::Result<f64> {
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port());
    let payload = "x".repeat(crate::PAYLOAD);
    raw_publish(&url, n, |_| payload.as_bytes().to_vec()).await
}

/// The TLS rows, on a TLS-only redis-server of their own.
pub(crate) async fn rows(n: u64) -> anyhow::Result<Vec<Row>> {
    let server = RedisServer::builder().tls(true).start();
    let mut measured: [Vec<f64>; 4] = Default::default();
    for round in 1..=ROUNDS {
        crate::progress::stage(format!(
            "TLS round {round}/{ROUNDS}: redis-benchmark --tls, raw redis-rs, ours, end to end"
        ));
        measured[0].push(benchmark(&server, n).await?);
        measured[1].push(raw(&server, n).await?);
        measured[2].push(publish(&server, n).await?);
        measured[3].push(end_to_end(&server, n).await?);
    }
    let [t, u, ours, e2e] = measured.map(|v| Spread::of(&v));
    Ok(vec![
        row(
            format!("rediss:// publish, 16 in flight ({ROUNDS} rounds)"),
            format!("T redis-benchmark --tls -P 16: {}", t.text()),
            ours.text(),
        )
        .ratio(format!("{} of T", pct(ours.median / t.median))),
        row(
            "  against raw redis-rs over TLS",
            format!("U raw redis-rs, 16 in flight: {}", u.text()),
            rate_text(ours.median),
        )
        .ratio(format!("{} of U", pct(ours.median / u.median))),
        row(
            format!("rediss:// end to end, bus to bus ({ROUNDS} rounds)"),
            format!("T: {}", rate_text(t.median)),
            e2e.text(),
        )
        .ratio(format!("{} of T", pct(e2e.median / t.median))),
    ])
}
