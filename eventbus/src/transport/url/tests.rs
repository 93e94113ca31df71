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
