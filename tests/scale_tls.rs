//! TLS at scale: `rediss+cluster://` against a TLS-only Redis Cluster (cluster bus and
//! replication over TLS too) and `rediss+sentinel://` against TLS sentinels (with a password
//! of their own) in front of TLS data nodes, every process with a certificate of one test
//! authority made by `openssl`.
//!
//! On the cluster a typed event travels as sharded pub/sub and a durable one through its
//! consumer group. Behind the sentinels events are delivered, and again after the primary is
//! killed and its replica promoted. On both, a client that trusts another authority gets a
//! connect error that says the TLS handshake failed on a certificate.
//!
//! Needs the `tls` feature: `cargo test --features tls --test scale_tls`. Skipped (with a
//! message) when redis-server is not installed, unless `CI=true`.
#![cfg(feature = "tls")]

use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{ConnectErrorKind, Event, EventBus};
use eventbus_suite::cluster::RedisCluster;
use eventbus_suite::failover::{recording_bus, until_delivered};
use eventbus_suite::sentinel::SentinelSet;
use eventbus_suite::tls_material::TlsMaterial;
use eventbus_suite::{Ping, Seen, bounded, fast, wait_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "tls_job", durable)]
struct Job {
    n: u64,
}

/// How long the sentinels may take to promote the replica.
const FAILOVER: Duration = Duration::from_secs(30);
/// How long after the promotion the bus may take to deliver again.
const RESUME: Duration = Duration::from_secs(10);

/// Short timeouts, with time for TLS handshakes on a loaded machine, trusting `ca`.
fn options(ca: Vec<u8>) -> RedisOptions {
    fast()
        .connect_timeout(Duration::from_secs(5))
        .watchdog_interval(Some(Duration::from_millis(200)))
        .tls_root_certificate(ca)
}

/// One TLS cluster for both checks: starting one takes seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_cluster_round_trip() {
    let Some(cluster) = RedisCluster::start_tls_or_skip() else {
        return;
    };
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    let ca = cluster.tls_material().ca_cert_pem();
    let owner = cluster.owner_of("events:ping");
    bounded(async move {
        another_authority_is_refused(&url).await;

        let (pings, jobs) = (Seen::new(), Seen::new());
        let bus = recording_bus(
            &url,
            "scale-tls",
            options(ca),
            (&pings, &jobs),
            |j: &Job| j.n,
        )
        .await;
        let receipt = bus.publish(Ping { n: 1 }).await.unwrap();
        assert_eq!(receipt.receivers, 1);
        let receipt = bus.publish(Job { n: 1 }).await.unwrap();
        assert!(receipt.entry_id.is_some());
        assert!(
            wait_for(Duration::from_secs(10), || pings.len() == 1
                && jobs.len() == 1)
            .await,
            "pings {:?}, jobs {:?}",
            pings.snapshot(),
            jobs.snapshot()
        );
        // The typed event went sharded, to the node owning its channel's slot.
        let node = cluster.node(owner);
        assert_eq!(node.command_calls("spublish"), 1);
        assert!(node.command_calls("ssubscribe") >= 1);
        bus.shutdown().await.unwrap();
    })
    .await;
}

/// A client that trusts another authority gets a connect error naming the seed nodes, whose
/// causes say the certificate was not accepted.
async fn another_authority_is_refused(url: &str) {
    let seed = url
        .trim_start_matches("rediss+cluster://")
        .split(',')
        .next()
        .unwrap();
    let other = TlsMaterial::generate();
    let started = Instant::now();
    let err = EventBus::builder()
        .redis_options(options(other.ca_cert_pem()))
        .handler(|_: Ping| async {})
        .connect(url)
        .await
        .expect_err("a certificate of another authority");
    let text = error_chain(&err);
    eprintln!("another authority: {text} (after {:?})", started.elapsed());
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{text}");
    assert!(err.to_string().contains(seed), "{text}");
    assert!(
        err.to_string()
            .contains("the TLS handshake failed on a certificate"),
        "{text}"
    );
    assert!(err.to_string().contains("tls_root_certificate"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sentinels_deliver_and_fail_over() {
    let Some(set) = SentinelSet::builder()
        .tls(true)
        .sentinel_password("tls-sentinel-pw")
        .start_or_skip()
    else {
        return;
    };
    let url = set.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let ca = set.tls_material().ca_cert_pem();
    let without_password = set.url_with_sentinel_password(None);
    bounded(async move {
        let err = EventBus::builder()
            .redis_options(options(TlsMaterial::generate().ca_cert_pem()))
            .connect(&url)
            .await
            .expect_err("sentinels with a certificate of another authority");
        assert!(
            err.to_string()
                .contains("the TLS handshake failed on a certificate"),
            "{}",
            error_chain(&err)
        );
        // The sentinels are asked alone, over TLS, to tell their refusal from the primary's.
        let err = EventBus::builder()
            .redis_options(options(ca.clone()))
            .connect(&without_password)
            .await
            .expect_err("no sentinel password");
        assert_eq!(err.kind(), ConnectErrorKind::Auth, "{err}");
        assert!(
            err.to_string().contains("sentinel authentication failed"),
            "{err}"
        );

        let (pings, jobs) = (Seen::new(), Seen::new());
        let bus = recording_bus(
            &url,
            "scale-tls",
            options(ca),
            (&pings, &jobs),
            |j: &Job| j.n,
        )
        .await;
        until_delivered(&bus, &pings, 0, Duration::from_secs(10), |n| Ping { n }).await;

        let started = Instant::now();
        let (set, new) = tokio::task::spawn_blocking(move || {
            let mut set = set;
            let old = set.kill_master();
            let new = set.wait_failover(&old, FAILOVER);
            (set, new)
        })
        .await
        .unwrap();
        let promoted = started.elapsed();
        let took = until_delivered(&bus, &pings, 1_000, RESUME, |n| Ping { n }).await;
        eprintln!("TLS failover to {new} after {promoted:?}; delivery back {took:?} later");
        bus.shutdown().await.unwrap();
        drop(set);
    })
    .await;
}

/// The error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
