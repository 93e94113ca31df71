//! The server's URL: where it comes from. It is shown through the library's
//! [`redact_url`](eventbus::transport::redact_url), which reads it as the bus does and masks
//! every password.

/// The URL used when neither `--url` nor `EVENTBUS_URL` is given.
pub(crate) const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

#[cfg(test)]
mod tests {
    use eventbus::transport::redact_url as redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:1"),
            "redis://:***@127.0.0.1:1"
        );
        assert_eq!(redact("redis://app:pw@h:1/2"), "redis://app:***@h:1/2");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        // A `@` in a query value is the value's: the password after it is still masked.
        assert_eq!(
            redact("redis+unix:///run/redis.sock?user=ops@corp&pass=s3cret"),
            "redis+unix:///run/redis.sock?user=ops@corp&pass=***"
        );
    }
}
