//! Where to connect: the URL's deployment (one server, Sentinel, a cluster) and the
//! `redis::Client` for it.

use std::fmt;

use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError};

use crate::redis::RedisOptions;
use crate::redis::cluster::nodes::{self, ClusterNodes};
use crate::redis::errors::{is_connection_error, redis_text};
use crate::redis::sentinel::discovery::{self, Sentinels};
use crate::transport::{ErrorKind, TransportError, redact_query, redact_url};

/// How the server to connect to is found.
pub(crate) enum Locator {
    /// At the URL's address.
    Direct(Box<Client>),
    /// Through sentinels, again on every connect.
    Sentinel(Box<Sentinels>),
    /// The nodes of a Redis Cluster, learnt from seed nodes.
    Cluster(Box<ClusterNodes>),
}

/// A parsed Redis URL and how to connect to it.
pub(crate) struct Target {
    pub(crate) locator: Locator,
    /// `host:port`, or the socket path (for Sentinel, the master name and the sentinels): what
    /// every message names.
    pub(crate) addr: String,
    /// The URL with passwords replaced by `***`.
    pub(crate) redacted: String,
    pub(crate) db: i64,
    pub(crate) tls: bool,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

/// [`redact_url`]; a text without a scheme is masked up to its last `@`.
pub(crate) fn redact(url: &str) -> String {
    match url.rfind('@') {
        // No scheme: everything before the last `@` may be a password.
        Some(at) if !url.contains("://") => redact_query(&format!("***{}", &url[at..])),
        _ => redact_url(url),
    }
}

impl Target {
    pub(crate) fn parse(url: &str, options: &RedisOptions) -> Result<Target, TransportError> {
        let redacted = redact(url);
        let invalid = |why: &dyn fmt::Display| {
            TransportError::new(
                ErrorKind::InvalidUrl,
                format!("invalid Redis URL `{redacted}`: {why}"),
            )
        };
        let url = check_url(url).map_err(|why| invalid(&why))?;
        if url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://") {
            return Self::in_cluster(&url, redacted.clone(), options).map_err(|why| invalid(&why));
        }
        if url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://") {
            return Self::sentinel(&url, redacted.clone(), options).map_err(|why| invalid(&why));
        }
        let tls = url.starts_with("rediss://");
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(
                &"rediss:// needs the `tls` feature of eventbus (`features = [\"tls\"]`)",
            ));
        }
        let parsed = redis::parse_redis_url(&url)
            .ok_or_else(|| invalid(&"not a valid URL (check the host name)"))?;
        let info = parsed
            .into_connection_info()
            .map_err(|e| invalid(&redis_text(&e)))?;
        let addr = info.addr().to_string();
        let db = info.redis_settings().db();
        let client =
            crate::redis::conn::tls::client(info, options).map_err(|e| invalid(&redis_text(&e)))?;
        if tls && url.ends_with("#insecure") {
            tracing::warn!(
                server = %addr,
                "TLS certificate and host name verification is OFF for {redacted} (#insecure): \
                 anyone between the service and Redis can read and change its traffic; use it \
                 only for tests, and RedisOptions::tls_root_certificate for a private CA"
            );
        }
        Ok(Target {
            locator: Locator::Direct(Box::new(client)),
            addr,
            redacted,
            db,
            tls,
        })
    }

    /// A target found through sentinels.
    fn sentinel(url: &str, redacted: String, options: &RedisOptions) -> Result<Target, String> {
        let parsed = discovery::parse_url(url)?;
        if parsed.tls && !cfg!(feature = "tls") {
            return Err(
                "rediss+sentinel:// needs the `tls` feature of eventbus (`features = [\"tls\"]`)"
                    .to_owned(),
            );
        }
        let sentinels = Sentinels::new(&parsed, options).map_err(|e| redis_text(&e))?;
        let db = parsed
            .node_url
            .as_str()
            .into_connection_info()
            .map_or(0, |i| i.redis_settings().db());
        Ok(Target {
            addr: format!(
                "primary `{}` (sentinels {})",
                sentinels.master, sentinels.hosts
            ),
            locator: Locator::Sentinel(Box::new(sentinels)),
            redacted,
            db,
            tls: parsed.tls,
        })
    }

    /// A target in a Redis Cluster.
    fn in_cluster(url: &str, redacted: String, options: &RedisOptions) -> Result<Target, String> {
        let (nodes, tls) = nodes::parse_url(url)?;
        if tls && !cfg!(feature = "tls") {
            return Err(
                "rediss+cluster:// needs the `tls` feature of eventbus (`features = [\"tls\"]`)"
                    .to_owned(),
            );
        }
        let nodes = ClusterNodes::new(&nodes, options).map_err(|e| redis_text(&e))?;
        Ok(Target {
            addr: format!("cluster {}", nodes.hosts),
            locator: Locator::Cluster(Box::new(nodes)),
            redacted,
            db: 0,
            tls,
        })
    }

    /// The cluster's nodes, for a Redis Cluster target.
    pub(crate) fn cluster(&self) -> Option<&ClusterNodes> {
        match &self.locator {
            Locator::Cluster(nodes) => Some(nodes),
            _ => None,
        }
    }

    /// A client for the server to connect to now: for Sentinel, the current primary, found
    /// by asking the sentinels.
    pub(crate) async fn client(&self) -> Result<Client, TransportError> {
        match &self.locator {
            Locator::Direct(client) => Ok((**client).clone()),
            // Boxed: the lookup's future is deep, and would deepen every future awaiting it.
            Locator::Sentinel(sentinels) => Box::pin(sentinels.master()).await,
            Locator::Cluster(_) => Err(TransportError::new(
                ErrorKind::Unsupported,
                "a Redis Cluster has no single server to connect to",
            )),
        }
    }

    /// A client for the subscriber connection: behind Sentinel with
    /// [`RedisOptions::subscribe_on_replica`], a replica (the primary when none is available);
    /// otherwise the same server as [`client`](Self::client).
    pub(crate) async fn subscriber_client(
        &self,
        options: &RedisOptions,
    ) -> Result<Client, TransportError> {
        match &self.locator {
            Locator::Sentinel(sentinels) if options.subscribe_on_replica => {
                Box::pin(sentinels.replica_or_master()).await
            }
            _ => self.client().await,
        }
    }

    /// Whether the connection that returned `e` must be replaced: it is unusable, or (behind
    /// Sentinel) it reached a server that is no longer the primary (`READONLY`).
    pub(crate) fn must_reconnect(&self, e: &RedisError) -> bool {
        is_connection_error(e)
            || (matches!(self.locator, Locator::Sentinel(_)) && e.code() == Some("READONLY"))
    }

    /// The configuration of the publisher's multiplexed connection: timeouts are applied by the
    /// transport itself, around each command.
    pub(crate) fn config(&self, options: &RedisOptions) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None)
    }
}

/// Checks a Redis URL before redis-rs reads it, so that each mistake gets its own message
/// (never showing the password), and returns it with its scheme in lower case.
fn check_url(url: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected a URL such as redis://127.0.0.1:6379".to_owned());
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "redis" | "rediss" => check_tcp(rest, scheme == "rediss")?,
        "redis+unix" | "unix" => check_unix(rest)?,
        "redis+sentinel" | "rediss+sentinel" | "redis+cluster" | "rediss+cluster" => {}
        _ => {
            return Err(format!(
                "unsupported scheme `{scheme}://`: expected redis://, rediss://, redis+unix://, \
                 redis+sentinel:// or redis+cluster://"
            ));
        }
    }
    Ok(format!("{scheme}://{rest}"))
}

/// `[user][:password]@host[:port][/db][?protocol=resp3][#insecure]`
pub(super) fn check_tcp(rest: &str, tls: bool) -> Result<(), String> {
    let server = match rest.rfind('@') {
        Some(at) => {
            check_userinfo(&rest[..at])?;
            &rest[at + 1..]
        }
        None => rest,
    };
    let end = server.find(['/', '?', '#']).unwrap_or(server.len());
    check_host_port(&server[..end])?;
    let tail = &server[end..];
    let (tail, fragment) = match tail.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (tail, None),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    match path.trim_matches('/') {
        "" => {}
        db => check_db(
            db,
            "the path of a Redis URL is the database number: redis://host:6379/0",
        )?,
    }
    check_query(query, false)?;
    match fragment {
        None | Some("") => Ok(()),
        Some("insecure") if tls => Ok(()),
        Some(_) if tls => Err("the only fragment a rediss:// URL takes is #insecure".to_owned()),
        Some(_) => Err("a redis:// URL takes no fragment (`#...`)".to_owned()),
    }
}

/// The user information: `/`, `?` and `#` would end it early, and what remains must decode to
/// UTF-8. Its text is never shown.
fn check_userinfo(userinfo: &str) -> Result<(), String> {
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
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
        if String::from_utf8(percent_decode(text)).is_err() {
            return Err(format!(
                "the {part} is not valid UTF-8 once percent-decoded (percent-encode each byte \
                 of its UTF-8 form)"
            ));
        }
    }
    Ok(())
}

pub(super) fn check_host_port(server: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = server.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("the IPv6 address lacks its closing `]`".to_owned());
        };
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Err("expected `:PORT` after the IPv6 address".to_owned()),
            },
        }
    } else {
        match server.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(
                    "an IPv6 address must be written in brackets: redis://[::1]:6379".to_owned(),
                );
            }
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        }
    };
    check_host(host)?;
    port.map_or(Ok(()), check_port)
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing: expected redis://HOST:PORT".to_owned());
    }
    if matches!(host, "0.0.0.0" | "::") {
        return Err(format!(
            "`{host}` is the wildcard address a server listens on, not one to connect to: \
             name the server (for this machine, 127.0.0.1)"
        ));
    }
    let bad = host.chars().find(|c| {
        c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    });
    match bad {
        Some(c) => Err(format!(
            "the host `{host}` holds `{c}`, which a host name cannot"
        )),
        None => Ok(()),
    }
}

fn check_port(port: &str) -> Result<(), String> {
    if port.is_empty() {
        return Err("the port is empty after `:`".to_owned());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the port `{port}` is not a number (1-65535)"));
    }
    match port.parse::<u32>() {
        Ok(0) => Err("port 0 is not a port a server listens on: use 1-65535".to_owned()),
        Ok(n) if n <= u32::from(u16::MAX) => Ok(()),
        _ => Err(format!("the port {port} is out of range: use 1-65535")),
    }
}

fn check_db(db: &str, hint: &str) -> Result<(), String> {
    match db.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(()),
        Ok(_) => Err(format!("the database number {db} is negative")),
        Err(_) => Err(format!("the database `{db}` is not a number ({hint})")),
    }
}

/// `protocol` must name a protocol; for Unix sockets `db` must be a number; the sentinels'
/// credentials belong to `redis+sentinel://` URLs alone. Other parameters are ignored.
fn check_query(query: &str, unix: bool) -> Result<(), String> {
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
fn check_unix(rest: &str) -> Result<(), String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == "/" {
        return Err("the socket path is missing: redis+unix:///path/to/redis.sock".to_owned());
    }
    if !path.starts_with('/') {
        return Err("the socket path must be absolute, after three slashes: \
             redis+unix:///path/to/redis.sock"
            .to_owned());
    }
    check_query(query, true)
}

/// The bytes `text` stands for once `%XX` escapes are decoded (a `%` not followed by two hex
/// digits stands for itself).
pub(super) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if bytes[i] == b'%' => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::errors::chain_text;

    #[test]
    fn query_passwords_are_redacted() {
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
        assert_eq!(redact("redis://u:s3cret@h:1/0"), "redis://u:***@h:1/0");
    }

    #[test]
    fn bad_urls_are_invalid_and_redacted() {
        let o = RedisOptions::default();
        for url in [
            "redis://u:s3cret@h:1/notanumber",
            "http://u:s3cret@h:1",
            "redis://u:s3cret@",
        ] {
            let e = Target::parse(url, &o).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{url}: {e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
            assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
        }
    }

    /// Each mistake and (part of) the one message it gets; none shows the password `s3cret`
    /// or redis-rs's own wording.
    #[test]
    fn each_url_mistake_has_its_own_message() {
        let o = RedisOptions::default();
        let cases: &[(&str, &str)] = &[
            (
                "redis://:Wr@ng/Pa55?x#y@127.0.0.1:P",
                "the password holds an unencoded `/`",
            ),
            (
                "redis://:s3cret/x@127.0.0.1:6379",
                "percent-encode it (`/` as %2F",
            ),
            (
                "redis://us/er:s3cret@127.0.0.1:6379",
                "the user name holds an unencoded `/`",
            ),
            ("redis://:s3c?ret@127.0.0.1:6379", "unencoded `?`"),
            ("redis://:s3c#ret@127.0.0.1:6379", "unencoded `#`"),
            (
                "redis://:s3cret%FF@127.0.0.1:6379",
                "password is not valid UTF-8",
            ),
            (
                "redis://:s3cret@127.0.0.1:0",
                "port 0 is not a port a server listens on",
            ),
            (
                "redis://:s3cret@127.0.0.1:99999",
                "the port 99999 is out of range: use 1-65535",
            ),
            (
                "redis://:s3cret@127.0.0.1:99999999999",
                "the port 99999999999 is out of range",
            ),
            (
                "redis://:s3cret@127.0.0.1:P",
                "the port `P` is not a number",
            ),
            ("redis://:s3cret@127.0.0.1:", "the port is empty"),
            ("redis://:s3cret@", "the host is missing"),
            ("redis://:s3cret@:6379", "the host is missing"),
            ("redis://0.0.0.0:6379", "`0.0.0.0` is the wildcard address"),
            ("redis://[::]:6379", "`::` is the wildcard address"),
            (
                "redis://::1:6379",
                "an IPv6 address must be written in brackets",
            ),
            ("redis://[::1:6379", "lacks its closing `]`"),
            ("redis://my host:6379", "the host `my host` holds ` `"),
            (
                "redis://:s3cret@127.0.0.1:6379/x",
                "the database `x` is not a number",
            ),
            (
                "redis://127.0.0.1:6379/-1",
                "the database number -1 is negative",
            ),
            ("redis://127.0.0.1:6379/?protocol=9", "unknown protocol `9`"),
            (
                "redis://127.0.0.1:6379/0#frag",
                "a redis:// URL takes no fragment",
            ),
            (
                "http://u:s3cret@127.0.0.1:1",
                "unsupported scheme `http://`",
            ),
            (
                "127.0.0.1:6379",
                "expected a URL such as redis://127.0.0.1:6379",
            ),
            (":s3cret@127.0.0.1:6379", "expected a URL such as redis://"),
            ("redis+unix://", "the socket path is missing"),
            (
                "redis+unix://tmp/r.sock",
                "the socket path must be absolute",
            ),
            (
                "redis://127.0.0.1:6379/0?sentinel_password=s3cret",
                "`sentinel_password` is for redis+sentinel:// URLs only",
            ),
            (
                "redis+cluster://h:1,h:2/?sentinel_password=s3cret",
                "`sentinel_password` is for redis+sentinel:// URLs only",
            ),
            (
                "redis+sentinel://:s3cret@h:1/m/x?sentinel_password=s3cret",
                "the database `x` is not a number",
            ),
            (
                "redis+sentinel://h:1/m?sentinel_username=u&sentinel_password=s3cret&sentinel_password=s3cret",
                "`sentinel_password` is given twice",
            ),
            (
                "redis+unix:///tmp/r.sock?db=x&pass=s3cret",
                "the database `x` is not a number",
            ),
        ];
        for (url, expected) in cases {
            let e = match Target::parse(url, &o) {
                Ok(_) => panic!("{url} was accepted"),
                Err(e) => e,
            };
            let text = chain_text(&e);
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{url}: {text}");
            assert!(text.contains(expected), "{url}: {text}");
            assert!(text.starts_with("invalid Redis URL `"), "{url}: {text}");
            for leak in ["s3cret", "Wr@ng", "Pa55", "InvalidClientConfig", " - "] {
                assert!(!text.contains(leak), "{url}: {text} shows {leak}");
                assert!(!format!("{e:?}").contains("s3cret"), "{url}: {e:?}");
            }
        }
    }

    #[test]
    fn schemes_are_case_insensitive() {
        let o = RedisOptions::default();
        for url in [
            "REDIS://127.0.0.1:6379",
            "Redis://127.0.0.1:6379/2",
            "REDIS+UNIX:///tmp/r.sock",
            "Unix:///tmp/r.sock",
        ] {
            let t = Target::parse(url, &o).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!t.tls, "{url}");
        }
        if cfg!(feature = "tls") {
            assert!(Target::parse("RediSS://127.0.0.1:6379", &o).unwrap().tls);
        }
    }

    #[test]
    fn good_urls_pass_the_checks() {
        let o = RedisOptions::default();
        for url in [
            "redis://127.0.0.1",
            "redis://localhost:6379/0?protocol=resp3",
            "redis://:p%2Fss%40w%3Frd@127.0.0.1:6379",
            "redis://:p@ss@127.0.0.1:6379",
            "redis://user:pa:ss@127.0.0.1:6379/15",
            "redis://[::1]:6379",
            "redis+unix:///tmp/r.sock?db=3&pass=x",
        ] {
            Target::parse(url, &o).unwrap_or_else(|e| panic!("{url}: {}", chain_text(&e)));
        }
        let t = Target::parse("redis://:p%2Fss@127.0.0.1:6390/4", &o).unwrap();
        assert_eq!((t.addr.as_str(), t.db), ("127.0.0.1:6390", 4));
    }

    #[test]
    fn addr_and_db_are_read() {
        let t = Target::parse("redis://u:pw@127.0.0.1:6390/3", &RedisOptions::default()).unwrap();
        assert_eq!(t.addr, "127.0.0.1:6390");
        assert_eq!(t.db, 3);
        assert!(!format!("{t:?}").contains("pw"));
    }
}
