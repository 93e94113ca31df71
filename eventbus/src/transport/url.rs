//! URLs in messages and logs.

/// Query parameters whose value is a password: `pass` and `password` (`redis+unix://`) and
/// `sentinel_password` (`redis+sentinel://`). Matched without regard to case.
const PASSWORD_PARAMS: [&str; 3] = ["pass", "password", "sentinel_password"];

/// The URL with any password replaced by `***`, for messages and logs: the one in the user
/// information (`redis://user:***@host`) and those of the query parameters `pass`, `password`
/// and `sentinel_password` (`redis+sentinel://h/m?sentinel_password=***`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Everything up to the last `@` is user information, whatever characters the password
    // holds (`/`, `?` and `#` included).
    let masked = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let host_and_path = &rest[at + 1..];
            let user = match userinfo.split_once(':') {
                Some((u, _)) if !u.contains(['/', '?', '#']) => format!("{u}:***"),
                Some(_) => "***".to_owned(),
                None => "***".to_owned(),
            };
            format!("{scheme}://{user}@{host_and_path}")
        }
        None => url.to_owned(),
    };
    redact_query(&masked)
}

/// The text with the values of password query parameters replaced by `***`. A value runs to
/// the next `&`, a `#` included, unless the text ends with the `#insecure` fragment.
pub(crate) fn redact_query(text: &str) -> String {
    let Some((head, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let (query, fragment) = match query.strip_suffix("#insecure") {
        Some(query) => (query, "#insecure"),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if PASSWORD_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p)) => {
                format!("{k}=***")
            }
            _ => kv.to_owned(),
        })
        .collect();
    format!("{head}?{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

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
    }
}
