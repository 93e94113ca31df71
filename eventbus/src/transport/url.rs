//! URLs in messages and logs.

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Everything up to the last `@` is user information, whatever characters the password
    // holds (`/`, `?` and `#` included).
    match rest.rfind('@') {
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
    }
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
}
