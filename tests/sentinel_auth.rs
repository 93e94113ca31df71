//! Sentinels with a password of their own (`requirepass` in sentinel.conf), in front of data
//! nodes with another: the URL carries the data nodes' password before `@` and the
//! sentinels' as `?sentinel_password=`. With both right events are delivered; a missing or
//! wrong sentinel password is an authentication error naming the sentinels, a wrong data
//! password one naming the primary, and no message or URL the bus shows holds a password.
//!
//! Skipped (with a message) when redis-server is not installed, unless `CI=true`.

use std::time::Duration;

use eventbus::{ConnectError, ConnectErrorKind, EventBus};
use eventbus_suite::failover::until_delivered;
use eventbus_suite::sentinel::SentinelSet;
use eventbus_suite::{Ping, Seen, bounded, fast};

const DATA_PASSWORD: &str = "data-s3cret";
const SENTINEL_PASSWORD: &str = "sentinel-s3cret";

fn start() -> Option<SentinelSet> {
    SentinelSet::builder()
        .password(DATA_PASSWORD)
        .sentinel_password(SENTINEL_PASSWORD)
        .start_or_skip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_password_in_the_url_reaches_the_sentinels() {
    let Some(set) = start() else {
        return;
    };
    let url = set.url();
    assert!(url.contains("?sentinel_password="), "{url}");
    bounded(async move {
        let pings = Seen::new();
        let p = pings.clone();
        let bus = EventBus::builder()
            .service("sentinel-auth")
            .redis_options(fast())
            .handler(move |e: Ping| {
                let p = p.clone();
                async move { p.push(e.n) }
            })
            .connect(&url)
            .await
            .expect("connect through sentinels with a password");
        bus.ready(Duration::from_secs(10)).await.unwrap();
        until_delivered(&bus, &pings, 0, Duration::from_secs(10), |n| Ping { n }).await;
        let shown = format!("{bus:?} {}", bus.asyncapi());
        for secret in [DATA_PASSWORD, SENTINEL_PASSWORD] {
            assert!(!shown.contains(secret), "{shown}");
        }
        bus.shutdown().await.unwrap();
        drop(set);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_say_who_refused_them() {
    let Some(set) = start() else {
        return;
    };
    let hosts: Vec<String> = set
        .sentinel_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let hosts = hosts.join(",");
    bounded(async move {
        let missing = connect_err(&set.url_with_sentinel_password(None)).await;
        assert_sentinels_refused(&missing, &hosts);
        assert!(
            missing.to_string().contains("require a password"),
            "{missing}"
        );
        assert!(
            missing.to_string().contains("sentinel_password="),
            "{missing}"
        );

        let wrong = connect_err(&set.url_with_sentinel_password(Some("wr0ng-pw"))).await;
        assert_sentinels_refused(&wrong, &hosts);
        assert!(wrong.to_string().contains("refused"), "{wrong}");
        assert!(!wrong.to_string().contains("wr0ng-pw"), "{wrong}");

        let data = set.url().replace(DATA_PASSWORD, "wr0ng-pw");
        let data = connect_err(&data).await;
        assert_eq!(data.kind(), ConnectErrorKind::Auth, "{data}");
        let text = data.to_string();
        assert!(text.contains("the primary `eventbus`"), "{text}");
        assert!(!text.contains("sentinel authentication failed"), "{text}");
        assert!(!text.contains("wr0ng-pw"), "{text}");
        drop(set);
    })
    .await;
}

/// The error of connecting a bus with a subscription (so the subscriber connects too).
async fn connect_err(url: &str) -> ConnectError {
    let err = EventBus::builder()
        .redis_options(fast())
        .handler(|_: Ping| async {})
        .connect(url)
        .await
        .expect_err("refused credentials");
    eprintln!("{err}");
    err
}

#[track_caller]
fn assert_sentinels_refused(err: &ConnectError, hosts: &str) {
    let text = err.to_string();
    assert_eq!(err.kind(), ConnectErrorKind::Auth, "{text}");
    assert!(text.contains("sentinel authentication failed"), "{text}");
    assert!(text.contains(hosts), "{text}");
    for secret in [DATA_PASSWORD, SENTINEL_PASSWORD] {
        assert!(!text.contains(secret), "{text}");
        assert!(!format!("{err:?}").contains(secret), "{err:?}");
    }
}
