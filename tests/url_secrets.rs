//! Passwords in URLs never show: for URLs of every scheme whose user names, passwords and
//! query values hold `@ : / ? # & = %` and unicode (percent-encoded, and raw where a user might
//! write them so), neither the redacted URL, nor the error of `connect` (its `Display`, its
//! `Debug` and every error of its source chain), nor what the bus logs while connecting holds
//! the password. Nothing listens where these URLs point, so every connect fails.
//!
//! A raw `&` is never put in a query value: it ends the value there, so what follows is another
//! parameter by the URL's own syntax (the bus cannot know it was meant as part of a password).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::EventBus;
use eventbus::redis::RedisOptions;
use eventbus::transport::redact_url;
use eventbus_suite::redis_server::RedisServer;
use proptest::prelude::*;

/// The characters user names, passwords and query values are made of around the secret.
const CHARS: &[char] = &[
    '@', ':', '/', '?', '#', '&', '=', '%', ',', 'é', '密', '🔑', 'a', 'Z', '9', '-', '.', '~',
];

/// The schemes, each with how its URL is written.
const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "REDIS",
    "redis+unix",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
];

/// A loopback port nobody listens on: bound, noted, closed.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `text` with every character but ASCII letters and digits percent-encoded (its UTF-8 bytes).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// How a generated text is written into the URL.
#[derive(Debug, Clone, Copy)]
enum Writing {
    Encoded,
    Raw,
}

impl Writing {
    /// `text` for the user information.
    fn userinfo(self, text: &str) -> String {
        match self {
            Writing::Encoded => encode(text),
            Writing::Raw => text.to_owned(),
        }
    }

    /// `text` for a query value: raw, but for `&`, which would end the value.
    fn query(self, text: &str) -> String {
        match self {
            Writing::Encoded => encode(text),
            Writing::Raw => text.replace('&', "%26"),
        }
    }
}

/// A URL and the secret it holds (as its password, a password query value, or both).
#[derive(Debug, Clone)]
struct Case {
    url: String,
    secret: String,
}

fn piece() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(CHARS), 0..4)
        .prop_map(|chars| chars.into_iter().collect())
}

fn writing() -> impl Strategy<Value = Writing> {
    prop_oneof![Just(Writing::Encoded), Just(Writing::Raw)]
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::sample::select(SCHEMES),
        piece(),
        (piece(), "[A-Za-z0-9]{8}", piece()),
        (writing(), writing()),
        0..3u8,
    )
        .prop_map(
            |(scheme, user, (before, core, after), (w_info, w_query), place)| {
                let secret = format!("S3cr3t{core}");
                let password = format!("{before}{secret}{after}");
                let in_userinfo = place != 1;
                let in_query = place != 0;
                let url = write_url(
                    scheme,
                    &user,
                    &password,
                    (w_info, w_query),
                    (in_userinfo, in_query),
                );
                Case { url, secret }
            },
        )
}

/// The URL of `scheme` with `password` in its user information and/or a password parameter.
fn write_url(
    scheme: &str,
    user: &str,
    password: &str,
    (w_info, w_query): (Writing, Writing),
    (in_userinfo, in_query): (bool, bool),
) -> String {
    let port = dead_port();
    let lower = scheme.to_ascii_lowercase();
    let userinfo = format!("{}:{}@", w_info.userinfo(user), w_info.userinfo(password));
    let qpass = w_query.query(password);
    let quser = w_query.query(user);
    if lower.ends_with("unix") {
        let path = format!("/tmp/eventbus-url-secrets-{port}.sock");
        return format!("{scheme}://{path}?db=0&user={quser}&pass={qpass}");
    }
    let userinfo = if in_userinfo || !in_query {
        userinfo
    } else {
        String::new()
    };
    let (hosts, path, key) = match lower.as_str() {
        "redis+sentinel" | "rediss+sentinel" => (
            format!("127.0.0.1:{port},localhost:{port}"),
            "/mymaster/0",
            "sentinel_password",
        ),
        "redis+cluster" | "rediss+cluster" => (
            format!("127.0.0.1:{port},127.0.0.1:{port}"),
            "/",
            "password",
        ),
        _ => (format!("127.0.0.1:{port}"), "/0", "password"),
    };
    let mut url = format!("{scheme}://{userinfo}{hosts}{path}");
    if in_query {
        if lower.contains("sentinel") {
            url.push_str(&format!("?sentinel_username={quser}&{key}={qpass}"));
        } else {
            url.push_str(&format!("?protocol=resp3&{key}={qpass}"));
        }
    }
    url
}

/// A writer into a shared buffer: what the bus logs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `f` with everything the bus logs (at `debug` and above) going to the returned log.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, log.text())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn options() -> RedisOptions {
    RedisOptions::new()
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
}

/// Every text a failed connect to `url` produces.
fn connect_texts(rt: &tokio::runtime::Runtime, url: &str) -> Vec<String> {
    let (result, log) = logged(|| {
        rt.block_on(async {
            let connect = EventBus::builder().redis_options(options()).connect(url);
            tokio::time::timeout(Duration::from_secs(10), connect).await
        })
    });
    let mut texts = vec![log];
    match result {
        Err(_) => panic!("connecting to {} took over 10 s", redact_url(url)),
        Ok(Ok(_)) => panic!("{} connected: nothing listens there", redact_url(url)),
        Ok(Err(e)) => {
            texts.push(e.to_string());
            texts.push(format!("{e:?}"));
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                texts.push(s.to_string());
                texts.push(format!("{s:?}"));
                source = s.source();
            }
        }
    }
    texts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn no_secret_in_redacted_urls_errors_or_logs(case in case()) {
        let rt = runtime();
        let redacted = redact_url(&case.url);
        prop_assert!(!redacted.contains(&case.secret), "{redacted}");
        for text in connect_texts(&rt, &case.url) {
            prop_assert!(
                !text.contains(&case.secret),
                "{} shows {}: {text}", case.url, case.secret
            );
        }
    }
}

/// A `@` in the sentinels' user name does not cut the URL there: their password stays hidden
/// in the error of a failed connect.
#[test]
fn a_sentinel_user_with_an_at_sign_does_not_show_the_sentinel_password() {
    let port = dead_port();
    let url = format!(
        "redis+sentinel://127.0.0.1:{port}/m?sentinel_username=ops@team&sentinel_password=s3cret"
    );
    let rt = runtime();
    let texts = connect_texts(&rt, &url);
    assert!(
        texts[1].contains(&format!("127.0.0.1:{port}")),
        "the error names the sentinel: {}",
        texts[1]
    );
    for text in texts {
        assert!(!text.contains("s3cret"), "{text}");
    }
    assert_eq!(
        redact_url(&url),
        format!(
            "redis+sentinel://127.0.0.1:{port}/m?sentinel_username=ops@team&sentinel_password=***"
        )
    );
}

/// A `@` in the user name of a Unix socket URL: the bus connects as that user, and neither
/// its debug log nor its AsyncAPI document shows the password.
#[test]
fn a_unix_user_with_an_at_sign_connects_and_does_not_show_the_password() {
    let Some(server) = RedisServer::builder()
        .unix_socket(true)
        .acl_user("ops@corp", "s3cret")
        .start_or_skip()
    else {
        return;
    };
    let path = server.unix_socket_path();
    let url = format!("redis+unix://{}?user=ops@corp&pass=s3cret", path.display());
    assert_eq!(
        redact_url(&url),
        format!("redis+unix://{}?user=ops@corp&pass=***", path.display())
    );
    let rt = runtime();
    let (bus, log) = logged(|| {
        rt.block_on(async {
            EventBus::builder()
                .service("url-secrets")
                .connect(&url)
                .await
                .expect("connects as ops@corp")
        })
    });
    assert!(log.contains("connected to redis"), "{log}");
    assert!(!log.contains("s3cret"), "{log}");
    let document = bus.asyncapi().to_string();
    assert!(!document.contains("s3cret"), "{document}");
    let server_object = &bus.asyncapi()["servers"]["redis"];
    assert_eq!(server_object["host"], "localhost");
    assert_eq!(server_object["pathname"], path.display().to_string());
    rt.block_on(bus.shutdown()).unwrap();
}
