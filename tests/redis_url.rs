//! Redis URL mistakes, as a user meets them through `connect`: one clear message per mistake,
//! `InvalidUrl` rather than "unreachable", never the password, never redis-rs's own wording.
//! No server is needed: the URL is checked before any connection is tried.

use std::time::Duration;

use eventbus::{ConnectErrorKind, EventBus};

/// Each bad URL and a part of the message it must get.
const CASES: &[(&str, &str)] = &[
    (
        "redis://:Wr@ng/Pa55?x#y@127.0.0.1:6379",
        "the password holds an unencoded `/`",
    ),
    (
        "redis://:s3cret/1@127.0.0.1:6379",
        "percent-encode it (`/` as %2F",
    ),
    (
        "redis://:s3cret@127.0.0.1:0",
        "port 0 is not a port a server listens on",
    ),
    (
        "redis://:s3cret@127.0.0.1:99999",
        "the port 99999 is out of range",
    ),
    (
        "redis://:s3cret@127.0.0.1:P",
        "the port `P` is not a number",
    ),
    (
        "redis://:s3cret@127.0.0.1:6379/db",
        "the database `db` is not a number",
    ),
    ("redis://:s3cret@", "the host is missing"),
    ("redis://0.0.0.0:6379", "wildcard address"),
    ("redis://127.0.0.1:6379?protocol=4", "unknown protocol `4`"),
    ("redis+unix://", "the socket path is missing"),
    (
        "redis+unix://relative/r.sock",
        "the socket path must be absolute",
    ),
];

#[tokio::test]
async fn each_bad_url_gets_its_own_message_without_the_password() {
    for (url, expected) in CASES {
        let connect = EventBus::builder().connect(url);
        let err = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .unwrap_or_else(|_| panic!("{url}: no answer within 5s"))
            .expect_err("a bad URL");
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert_eq!(err.kind(), ConnectErrorKind::InvalidUrl, "{url}: {text}");
        assert!(text.contains(expected), "{url}: {text}");
        for leak in ["s3cret", "Wr@ng", "Pa55", "InvalidClientConfig", " - "] {
            assert!(!text.contains(leak), "{url}: `{text}` shows `{leak}`");
        }
        assert!(!format!("{err:?}").contains("s3cret"), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn an_encoded_password_is_accepted() {
    // Reaches connecting (a free port refuses): the URL itself was fine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:Wr%40ng%2FPa55%3Fx%23y@127.0.0.1:{port}");
    let err = EventBus::builder()
        .connect(&url)
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("Pa55"), "{err:?}");
}
