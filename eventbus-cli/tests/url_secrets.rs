//! No password shows in what the tool prints, whatever characters surround it in the URL:
//! generated URLs of every scheme, the password percent-encoded or raw in the user information
//! and in the password query parameters, against a port nobody listens on.

mod common;

use common::*;
use proptest::prelude::*;

const CHARS: &[char] = &[
    '@', ':', '/', '?', '#', '&', '=', '%', ',', 'é', '密', 'a', '9', '-',
];

const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
];

/// A loopback port nobody listens on: bound, noted, closed.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `text` with every character but ASCII letters and digits percent-encoded.
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

fn piece() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(CHARS), 0..4)
        .prop_map(|chars| chars.into_iter().collect())
}

/// `(url, secret)`: the password in the user information (raw or encoded) and in the query
/// (encoded, or raw but for `&`, which would end the value).
fn url() -> impl Strategy<Value = (String, String)> {
    (
        proptest::sample::select(SCHEMES),
        (piece(), "[A-Za-z0-9]{8}", piece()),
        any::<bool>(),
    )
        .prop_map(|(scheme, (before, core, after), raw)| {
            let secret = format!("S3cr3t{core}");
            let password = format!("{before}{secret}{after}");
            let (info, query) = match raw {
                true => (password.clone(), password.replace('&', "%26")),
                false => (encode(&password), encode(&password)),
            };
            let port = dead_port();
            let url = match scheme {
                "redis+unix" => format!("{scheme}:///tmp/eventbus-cli-{port}.sock?user=u&pass={query}"),
                s if s.contains("sentinel") => format!(
                    "{scheme}://:{info}@127.0.0.1:{port}/m?sentinel_username=ops@team&sentinel_password={query}"
                ),
                s if s.contains("cluster") => format!("{scheme}://:{info}@127.0.0.1:{port}/"),
                _ => format!("{scheme}://:{info}@127.0.0.1:{port}/0?password={query}"),
            };
            (url, secret)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_tool_never_prints_the_password((url, secret) in url()) {
        let out = run(&url, &["monitor", "--once"]);
        prop_assert!(!out.status.success(), "{url}");
        let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
        prop_assert!(!printed.contains(&secret), "{url}: {printed}");
    }
}

/// The two URLs whose passwords showed when user information was cut at the last `@` of the
/// whole URL.
#[test]
fn an_at_sign_in_a_query_value_does_not_show_the_password() {
    let port = dead_port();
    for url in [
        format!(
            "redis+sentinel://127.0.0.1:{port}/m?sentinel_username=ops@team&sentinel_password=s3cret"
        ),
        format!("redis+unix:///tmp/eventbus-cli-{port}.sock?user=ops@corp&pass=s3cret"),
    ] {
        let out = run(&url, &["monitor", "--once"]);
        assert_code(&out, 3);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("s3cret"), "{stderr}");
        assert!(stderr.contains("=***"), "{stderr}");
    }
}
