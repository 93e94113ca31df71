use super::{Url, redact_url};

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact_url("redis://app:s3cret@127.0.0.1:6379/0"),
        "redis://app:***@127.0.0.1:6379/0"
    );
    assert_eq!(redact_url("redis://:s3cret@h:1"), "redis://:***@h:1");
    assert_eq!(redact_url("redis://s3cret@h:1"), "redis://***@h:1");
    assert_eq!(redact_url("redis://h:1/2"), "redis://h:1/2");
    assert_eq!(redact_url("nonsense"), "nonsense");
    assert_eq!(
        redact_url("redis://app:pa/ss?w#d@127.0.0.1:6379/0"),
        "redis://app:***@127.0.0.1:6379/0"
    );
    assert_eq!(redact_url("redis://:a@b@h:1"), "redis://:***@h:1");
    assert_eq!(redact_url(":s3cret@127.0.0.1:6379"), ":***@127.0.0.1:6379");
    assert_eq!(redact_url("s3/cret@127.0.0.1:6379"), "***@127.0.0.1:6379");
}

#[test]
fn query_passwords_are_redacted() {
    assert_eq!(
        redact_url("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
        "redis+unix:///tmp/r.sock?db=1&pass=***"
    );
    assert_eq!(
        redact_url("redis+sentinel://:d@h:1,h:2/m?sentinel_username=w&sentinel_password=s3#x"),
        "redis+sentinel://:***@h:1,h:2/m?sentinel_username=w&sentinel_password=***"
    );
    assert_eq!(
        redact_url("rediss+sentinel://h:1/m?Sentinel_Password=s3cret#insecure"),
        "rediss+sentinel://h:1/m?Sentinel_Password=***#insecure"
    );
    assert_eq!(
        redact_url("redis://h:1/0?protocol=resp3"),
        "redis://h:1/0?protocol=resp3"
    );
    assert_eq!(redact_url("redis://h:1/0#frag"), "redis://h:1/0#frag");
    // An unencoded `#` in a user name value puts the password in the fragment.
    assert_eq!(
        redact_url("redis+sentinel://h/m?sentinel_username=a#b&sentinel_password=s3cret"),
        "redis+sentinel://h/m?sentinel_username=a#b&sentinel_password=***"
    );
}

/// A `@` in a query value belongs to the value: the authority is not cut there.
#[test]
fn an_at_sign_in_a_query_value_is_the_values() {
    let text = "redis+sentinel://h:26379/m?sentinel_username=ops@team&sentinel_password=s3cret";
    let url = Url::parse(text);
    assert_eq!(url.userinfo(), None);
    assert_eq!(url.hosts(), "h:26379");
    assert_eq!(url.path(), "/m");
    assert_eq!(
        url.to_string(),
        "redis+sentinel://h:26379/m?sentinel_username=ops@team&sentinel_password=***"
    );
    let text = "redis+unix:///run/redis.sock?user=ops@corp&pass=s3cret";
    let url = Url::parse(text);
    assert_eq!((url.userinfo(), url.hosts()), (None, ""));
    assert_eq!(url.path(), "/run/redis.sock");
    assert_eq!(url.query(), Some("user=ops@corp&pass=s3cret"));
    assert_eq!(
        url.to_string(),
        "redis+unix:///run/redis.sock?user=ops@corp&pass=***"
    );
    // The password's own `?` inside a value does not end the parameter.
    let url = Url::parse("redis+unix:///s?pass=a?b@c&db=1");
    assert_eq!(url.to_string(), "redis+unix:///s?pass=***&db=1");
    // An unencoded `#` in a password value: the fragment after it is the value's.
    let url = Url::parse("redis+sentinel://h:1/m?sentinel_password=#@s3cret");
    assert_eq!((url.userinfo(), url.hosts()), (None, "h:1"));
    assert_eq!(
        url.to_string(),
        "redis+sentinel://h:1/m?sentinel_password=***"
    );
    // A socket path may hold a `@`.
    assert_eq!(Url::parse("unix:///run/a@b.sock").path(), "/run/a@b.sock");
}

/// A password with an unencoded `/`, `?` or `#` is recognised: the user information runs to
/// the `@` that follows it.
#[test]
fn unencoded_delimiters_in_a_password_are_recognised() {
    for (text, userinfo, hosts) in [
        (
            "redis://:s3cret/x@127.0.0.1:6379",
            ":s3cret/x",
            "127.0.0.1:6379",
        ),
        (
            "redis://:s3c?ret@127.0.0.1:6379",
            ":s3c?ret",
            "127.0.0.1:6379",
        ),
        (
            "redis://:s3c#ret@127.0.0.1:6379",
            ":s3c#ret",
            "127.0.0.1:6379",
        ),
        (
            "redis://:Wr@ng/Pa55?x#y@127.0.0.1:P",
            ":Wr@ng/Pa55?x#y",
            "127.0.0.1:P",
        ),
        ("redis://u:1/2@h:1/0", "u:1/2", "h:1"),
        // Behind an authority that is no host list, even a `@` in a credential value.
        ("redis://u:S3?pass=x@h:1", "u:S3?pass=x", "h:1"),
        ("redis://u:a/s3@c@h:1/0", "u:a/s3@c", "h:1"),
        (
            "redis+sentinel://@:s3?@h:1/m?sentinel_username=@&sentinel_password=s3?",
            "@:s3?",
            "h:1",
        ),
        (
            "redis+sentinel://:s3/x@h:1/m?sentinel_password=p@q",
            ":s3/x",
            "h:1",
        ),
    ] {
        let url = Url::parse(text);
        assert_eq!(url.userinfo(), Some(userinfo), "{text}");
        assert_eq!(url.hosts(), hosts, "{text}");
        let shown = url.to_string();
        assert!(!shown.contains("s3") && !shown.contains("S3"), "{shown}");
    }
}

#[test]
fn normalised_user_information_is_encoded_once() {
    let url = Url::parse("REDIS://us%40er:p@ss:w%2Frd%zz@h:1/2?protocol=resp3#x");
    assert_eq!(
        url.normalized(),
        "redis://us%40er:p%40ss%3Aw%2Frd%25zz@h:1/2?protocol=resp3#x"
    );
    assert_eq!(url.scheme().as_deref(), Some("redis"));
    assert_eq!(Url::parse("redis://h:1").normalized(), "redis://h:1");
    assert_eq!(Url::parse("memory://").scheme().as_deref(), Some("memory"));
}

#[test]
fn debug_is_redacted() {
    let url = Url::parse("redis://u:s3cret@h:1/0?pass=s3cret");
    assert_eq!(format!("{url:?}"), "Url(\"redis://u:***@h:1/0?pass=***\")");
}

/// Generated URLs of every scheme, with a password (`S3cr3t` and 8 random letters and digits,
/// between characters URLs treat apart) percent-encoded or raw in the user information and
/// the password query parameters.
pub(crate) mod secrets {
    use proptest::prelude::*;

    use super::{Url, redact_url};

    const CHARS: &[char] = &[
        '@', ':', '/', '?', '#', '&', '=', '%', ',', 'é', '密', '🔑', 'a', '9', '-', '.',
    ];

    fn piece() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(CHARS), 0..5)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// `text` percent-encoded (`encode`), or raw but for `&` in a query value (`query`).
    fn write(text: &str, encode: bool, query: bool) -> String {
        if encode {
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        } else if query {
            text.replace('&', "%26")
        } else {
            text.to_owned()
        }
    }

    /// `(url, secret)`.
    pub(crate) fn url() -> impl Strategy<Value = (String, String)> {
        const SCHEMES: &[&str] = &[
            "redis",
            "rediss",
            "redis+unix",
            "unix",
            "redis+sentinel",
            "rediss+sentinel",
            "redis+cluster",
            "rediss+cluster",
            "memory",
            "http",
        ];
        (
            proptest::sample::select(SCHEMES),
            (piece(), piece(), "[A-Za-z0-9]{8}", piece()),
            (any::<bool>(), any::<bool>(), 0..3u8),
        )
            .prop_map(
                |(scheme, (user, before, core, after), (enc_info, enc_query, place))| {
                    let secret = format!("S3cr3t{core}");
                    let password = format!("{before}{secret}{after}");
                    let (info_pw, query_pw) = (
                        write(&password, enc_info, false),
                        write(&password, enc_query, true),
                    );
                    let (info_user, query_user) =
                        (write(&user, enc_info, false), write(&user, enc_query, true));
                    let userinfo = match place {
                        1 => String::new(),
                        // Not a part of the form: `redis+unix:///a:b@/c` is a socket path.
                        _ if scheme.ends_with("unix") => format!(
                            "{}:{}@",
                            write(&user, true, false),
                            write(&password, true, false)
                        ),
                        _ => format!("{info_user}:{info_pw}@"),
                    };
                    let query = match place {
                        0 => String::new(),
                        _ if scheme.contains("sentinel") => {
                            format!("?sentinel_username={query_user}&sentinel_password={query_pw}")
                        }
                        _ => format!("?user={query_user}&pass={query_pw}&password={query_pw}"),
                    };
                    let url = match scheme {
                        "redis+unix" | "unix" => format!("{scheme}://{userinfo}/tmp/r.sock{query}"),
                        s if s.contains("sentinel") => {
                            format!("{scheme}://{userinfo}h:26379,h:26380/m/1{query}")
                        }
                        s if s.contains("cluster") => {
                            format!("{scheme}://{userinfo}h:1,h:2/{query}")
                        }
                        _ => format!("{scheme}://{userinfo}h:6379/0{query}"),
                    };
                    (url, secret)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Neither the redacted URL, nor the parsed URL's `Debug`, nor the AsyncAPI document's
        /// server shows the password (the errors: `redis::target`'s tests).
        #[test]
        fn no_secret_shows((url, secret) in url()) {
            let redacted = redact_url(&url);
            prop_assert!(!redacted.contains(&secret), "{url}: {redacted}");
            let debug = format!("{:?}", Url::parse(&url));
            prop_assert!(!debug.contains(&secret), "{url}: {debug}");
            let document = crate::asyncapi::document("svc", Some(&redacted), &[], &[]);
            prop_assert!(!document.to_string().contains(&secret), "{url}: {document}");
        }
    }
}
