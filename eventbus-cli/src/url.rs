//! The server's URL: where it comes from and how it is shown (never with its password).

/// The URL used when neither `--url` nor `EVENTBUS_URL` is given.
pub(crate) const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The URL with its password replaced by `***`, in the user information
/// (`redis://user:***@host`) and in `pass`/`password` query parameters
/// (`redis+unix:///tmp/redis.sock?pass=***`).
pub(crate) fn redact(url: &str) -> String {
    let masked = eventbus::transport::redact_url(url);
    let Some((head, query)) = masked.split_once('?') else {
        return masked;
    };
    let params: Vec<String> = query.split('&').map(redact_param).collect();
    format!("{head}?{}", params.join("&"))
}

fn redact_param(param: &str) -> String {
    match param.split_once('=') {
        Some((key, _))
            if key.eq_ignore_ascii_case("pass") || key.eq_ignore_ascii_case("password") =>
        {
            format!("{key}=***")
        }
        _ => param.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

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
    }
}
