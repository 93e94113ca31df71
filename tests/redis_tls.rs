//! `rediss://` against a TLS-only redis-server with certificates made by `openssl` at test
//! time.
//!
//! With eventbus's `tls` feature (`cargo test --features eventbus/tls --test redis_tls`) the
//! round trips run; without it the test checks that `rediss://` is refused with a clear
//! [`ErrorKind::InvalidUrl`] naming the feature.

use std::time::Duration;

use eventbus::redis::RedisOptions;
use eventbus::{ConnectErrorKind, EventBus};
use eventbus_suite::redis_server::RedisServer;
use eventbus_suite::{Ping, bounded};
use tokio::sync::mpsc;

/// The shared short timeouts, with time for a TLS handshake on a loaded machine.
fn options() -> RedisOptions {
    eventbus_suite::fast().connect_timeout(Duration::from_secs(5))
}

async fn round_trip(server: &RedisServer, options: RedisOptions, url: &str) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bus = EventBus::builder()
        .redis_options(options)
        .handler(move |e: Ping| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(url)
        .await
        .expect("connect over TLS");
    let receipt = bus.publish(Ping { n: 1 }).await.unwrap();
    assert_eq!(receipt.receivers, 1);
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(got.unwrap().unwrap(), Ping { n: 1 });
    assert_eq!(
        server
            .cli(&["PUBSUB", "NUMSUB", "events:ping"])
            .lines()
            .nth(1),
        Some("1")
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn rediss_round_trip() {
    let Some(server) = RedisServer::builder()
        .tls(true)
        .password("tls-pw")
        .start_or_skip()
    else {
        return;
    };
    bounded(async {
        let url = server.url_with_password();
        assert!(url.starts_with("rediss://"), "{url}");
        let trusted = options().tls_root_certificate(server.ca_cert_pem());
        let first = EventBus::builder()
            .redis_options(trusted.clone())
            .connect(&url)
            .await;
        let bus = match first {
            Err(e) if e.kind() == ConnectErrorKind::InvalidUrl => {
                assert!(e.to_string().contains("`tls` feature"), "{e}");
                assert!(!e.to_string().contains("tls-pw"), "{e}");
                eprintln!(
                    "rediss:// is refused without the `tls` feature, as it should be; \
                     run with `--features eventbus/tls` to test TLS itself"
                );
                return;
            }
            other => other.expect("connect over TLS"),
        };
        bus.shutdown().await.unwrap();

        round_trip(&server, trusted.clone(), &url).await;

        // Mutual TLS: the client certificate is accepted.
        let mtls = trusted
            .clone()
            .tls_client_certificate(server.client_cert_pem(), server.client_key_pem());
        round_trip(&server, mtls, &url).await;

        // Without the test CA the server's certificate is not trusted.
        let err = EventBus::builder()
            .redis_options(options())
            .connect(&url)
            .await
            .expect_err("an untrusted certificate");
        assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{err}"
        );
        assert!(!err.to_string().contains("tls-pw"), "{err}");
        assert!(err.to_string().contains("tls_root_certificate"), "{err}");
        eprintln!("untrusted certificate: {err}");

        // A server that requires client certificates accepts ours and refuses a client without.
        let strict = RedisServer::builder()
            .tls(true)
            .arg("--tls-auth-clients", "yes")
            .start();
        let err = EventBus::builder()
            .redis_options(options().tls_root_certificate(strict.ca_cert_pem()))
            .connect(&strict.url())
            .await
            .expect_err("no client certificate");
        assert!(
            matches!(
                err.kind(),
                ConnectErrorKind::Unreachable | ConnectErrorKind::Timeout
            ),
            "{:?}: {err}",
            err.kind()
        );
        eprintln!("without a client certificate: {err}");
        let mtls = options()
            .tls_root_certificate(strict.ca_cert_pem())
            .tls_client_certificate(strict.client_cert_pem(), strict.client_key_pem());
        round_trip(&strict, mtls, &strict.url()).await;

        // A plain-text client gets nowhere on a TLS port, and says so in time.
        let plain = url.replacen("rediss://", "redis://", 1);
        let err = EventBus::builder()
            .redis_options(options())
            .connect(&plain)
            .await
            .expect_err("plain text on a TLS port");
        assert!(
            matches!(
                err.kind(),
                ConnectErrorKind::Unreachable | ConnectErrorKind::Timeout
            ),
            "{:?}: {err}",
            err.kind()
        );
    })
    .await;
}

/// `#insecure` skips certificate and host-name checks: explicit in the URL, and logged as a
/// warning every time a bus connects with it.
#[tokio::test]
async fn insecure_tls_is_explicit_and_warned_about() {
    let Some(server) = RedisServer::builder().tls(true).start_or_skip() else {
        return;
    };
    if !cfg!(feature = "tls") && !eventbus_supports_tls().await {
        return;
    }
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || LogWriter(sink.clone()))
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let url = format!("{}/#insecure", server.url());
    round_trip(&server, options(), &url).await;
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WARN") && text.contains("verification is OFF"),
        "{text}"
    );
}

/// Whether this build of eventbus takes `rediss://` at all.
async fn eventbus_supports_tls() -> bool {
    let err = EventBus::builder()
        .connect("rediss://127.0.0.1:1")
        .await
        .unwrap_err();
    !err.to_string().contains("`tls` feature")
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
