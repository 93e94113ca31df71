//! The rules of the Redis URL forms, checked before redis-rs reads a URL, so that each mistake
//! gets its own message. No message shows a password: they name the part that is wrong, and
//! show only host names, ports, database numbers and option values.

use super::{Url, check_host_port, decode};

/// The schemes of the Redis transport, for messages.
const SCHEMES: &str = "redis://, rediss://, redis+unix://, redis+sentinel:// or redis+cluster://";

/// Parses a Redis URL and checks the rules of its form (those of `redis+sentinel://` and
/// `redis+cluster://` URLs are their modules').
pub(crate) fn check_url(text: &str) -> Result<Url<'_>, String> {
    let url = Url::parse(text);
    let Some(scheme) = url.scheme() else {
        return Err("expected a URL such as redis://127.0.0.1:6379".to_owned());
    };
    match scheme.as_str() {
        "redis" | "rediss" => check_tcp(&url, scheme == "rediss")?,
        "redis+unix" | "unix" => check_unix(&url)?,
        "redis+sentinel" | "rediss+sentinel" | "redis+cluster" | "rediss+cluster" => {}
        _ => {
            return Err(format!(
                "unsupported scheme `{scheme}://`: expected {SCHEMES}"
            ));
        }
    }
    Ok(url)
}

/// `[user][:password]@host[:port][/db][?protocol=resp3][#insecure]`
fn check_tcp(url: &Url<'_>, tls: bool) -> Result<(), String> {
    check_userinfo(url)?;
    check_host_port(url.hosts())?;
    match url.path().trim_matches('/') {
        "" => {}
        db => check_db(
            db,
            "the path of a Redis URL is the database number: redis://host:6379/0",
        )?,
    }
    check_query(url.query().unwrap_or_default(), false)?;
    check_fragment(url.fragment(), tls)
}

/// Only `rediss` URLs take a fragment, and only `#insecure`.
pub(crate) fn check_fragment(fragment: Option<&str>, tls: bool) -> Result<(), String> {
    match fragment {
        None | Some("") => Ok(()),
        Some("insecure") if tls => Ok(()),
        Some(_) if tls => Err("the only fragment a rediss:// URL takes is #insecure".to_owned()),
        Some(_) => Err("a redis:// URL takes no fragment (`#...`)".to_owned()),
    }
}

/// The user information: `/`, `?` and `#` would have ended it early, and what remains must
/// decode to UTF-8. Its text is never shown.
pub(crate) fn check_userinfo(url: &Url<'_>) -> Result<(), String> {
    let Some((user, password)) = url.credentials() else {
        return Ok(());
    };
    for (part, text) in [("user name", Some(user)), ("password", password)] {
        let Some(text) = text else { continue };
        if let Some(c) = text.chars().find(|c| matches!(c, '/' | '?' | '#')) {
            return Err(format!(
                "the {part} holds an unencoded `{c}`, which ends the user information of a \
                 URL; percent-encode it (`/` as %2F, `?` as %3F, `#` as %23, `@` as %40, `:` \
                 as %3A, `%` as %25)"
            ));
        }
        if decode(text).is_err() {
            return Err(format!(
                "the {part} is not valid UTF-8 once percent-decoded (percent-encode each byte \
                 of its UTF-8 form)"
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_db(db: &str, hint: &str) -> Result<(), String> {
    match db.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(()),
        Ok(_) => Err(format!("the database number {db} is negative")),
        Err(_) => Err(format!("the database `{db}` is not a number ({hint})")),
    }
}

/// `protocol` must name a protocol; for Unix sockets `db` must be a number; the sentinels'
/// credentials belong to `redis+sentinel://` URLs alone. Other parameters are ignored.
pub(crate) fn check_query(query: &str, unix: bool) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "protocol" if !matches!(value, "2" | "3" | "resp2" | "resp3") => {
                return Err(format!(
                    "unknown protocol `{value}`: use protocol=resp2 or protocol=resp3"
                ));
            }
            "db" if unix => check_db(value, "redis+unix:///path/to/redis.sock?db=0")?,
            "sentinel_username" | "sentinel_password" => {
                return Err(format!(
                    "`{key}` is for redis+sentinel:// URLs only (the sentinels' own credentials)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `/absolute/path/to/socket[?db=N&user=U&pass=P&protocol=resp3]`
fn check_unix(url: &Url<'_>) -> Result<(), String> {
    if url.userinfo().is_some() || !url.hosts().is_empty() {
        return Err("the socket path must be absolute, after three slashes: \
             redis+unix:///path/to/redis.sock"
            .to_owned());
    }
    if url.path().is_empty() || url.path() == "/" {
        return Err("the socket path is missing: redis+unix:///path/to/redis.sock".to_owned());
    }
    check_query(url.query().unwrap_or_default(), true)?;
    match url.fragment() {
        None | Some("") => Ok(()),
        Some(_) => Err(
            "a redis+unix:// URL takes no fragment (`#...`); percent-encode a `#` \
             in a query value as %23"
                .to_owned(),
        ),
    }
}
