//! Where to connect: URL parsing, the `redis::Client`, and error mapping that never leaks a
//! password.

use std::fmt;
use std::time::Duration;

use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError};

use super::RedisOptions;
use crate::transport::{ErrorKind, TransportError, redact_url};

/// A parsed Redis URL and the client that connects to it.
pub(crate) struct Target {
    pub(crate) client: Client,
    /// `host:port`, or the socket path: what every message names.
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

/// [`redact_url`], and also `pass`/`password` query parameters (`redis+unix:///s?pass=...`).
pub(crate) fn redact(url: &str) -> String {
    // User information first: a password may itself hold `?`.
    let masked = redact_url(url);
    let (head, query) = match masked.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (masked.as_str(), None),
    };
    let mut out = head.to_owned();
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                {
                    format!("{k}=***")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
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
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        let tls = scheme == "rediss";
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(
                &"rediss:// needs the `tls` feature of eventbus (`features = [\"tls\"]`)",
            ));
        }
        if !matches!(scheme, "redis" | "rediss" | "redis+unix" | "unix") {
            return Err(invalid(&"expected redis://, rediss:// or redis+unix://"));
        }
        let parsed = redis::parse_redis_url(url).ok_or_else(|| invalid(&"not a valid URL"))?;
        let info = parsed.into_connection_info().map_err(|e| invalid(&e))?;
        let addr = info.addr().to_string();
        let db = info.redis_settings().db();
        let client = build_client(info, options).map_err(|e| invalid(&e))?;
        Ok(Target {
            client,
            addr,
            redacted,
            db,
            tls,
        })
    }

    /// The configuration of the publisher's multiplexed connection: timeouts are applied by the
    /// transport itself, around each command.
    pub(crate) fn config(&self, options: &RedisOptions) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None)
    }

    /// Maps an error met while connecting.
    pub(crate) fn connect_error(&self, e: RedisError, timeout: Duration) -> TransportError {
        let addr = &self.addr;
        let kind = classify(&e, ErrorKind::Unreachable);
        let message = match kind {
            ErrorKind::Auth => auth_message(addr, &e),
            ErrorKind::Timeout => {
                format!("Redis at {addr} did not complete the connection within {timeout:?}")
            }
            ErrorKind::Unreachable => format!("cannot connect to Redis at {addr}"),
            _ => format!("connecting to Redis at {addr} failed"),
        };
        TransportError::new(kind, message).with_source(RedisCause::of(&e))
    }

    /// Maps an error met on an established connection.
    pub(crate) fn command_error(&self, what: &str, e: RedisError) -> TransportError {
        let addr = &self.addr;
        let kind = classify(&e, ErrorKind::Disconnected);
        let message = match kind {
            ErrorKind::Auth => auth_message(addr, &e),
            ErrorKind::Disconnected => {
                format!("{what} failed: the connection to Redis at {addr} was lost")
            }
            _ => format!("{what} failed on Redis at {addr}"),
        };
        TransportError::new(kind, message).with_source(RedisCause::of(&e))
    }

    pub(crate) fn timeout_error(&self, what: &str, timeout: Duration) -> TransportError {
        TransportError::new(
            ErrorKind::Timeout,
            format!(
                "{what} timed out: Redis at {} did not answer within {timeout:?}",
                self.addr
            ),
        )
    }
}

/// What redis-rs said, as the cause of one of our errors.
///
/// A redis-rs error's message repeats its own source's, so it is kept as text: the chain then
/// names each cause once, and redis-rs types stay out of the public API.
#[derive(Debug)]
pub(crate) struct RedisCause(String);

impl RedisCause {
    pub(crate) fn of(e: &RedisError) -> Self {
        RedisCause(e.to_string())
    }
}

impl fmt::Display for RedisCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedisCause {}

/// The error and its causes on one line, for connection events and later messages.
pub(crate) fn chain_text(e: &TransportError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn auth_message(addr: &str, e: &RedisError) -> String {
    match e.code() {
        Some("NOAUTH") => format!(
            "Redis at {addr} requires authentication (NOAUTH): put the password in the URL \
             (`redis://:PASSWORD@host:port` or `redis://USER:PASSWORD@host:port`)"
        ),
        _ => format!(
            "Redis at {addr} refused the credentials (wrong user name or password, or the user is disabled)"
        ),
    }
}

/// The bus's error kind for a redis-rs error; `io` is the kind for I/O failures (refused,
/// reset, closed), which depends on whether the connection was being made or in use.
pub(crate) fn classify(e: &RedisError, io: ErrorKind) -> ErrorKind {
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        ErrorKind::Auth
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.kind() == redis::ErrorKind::InvalidClientConfig {
        ErrorKind::InvalidUrl
    } else if e.is_io_error() || is_connection_error(e) {
        io
    } else {
        ErrorKind::Server
    }
}

/// Whether the connection that returned `e` is unusable and must be replaced.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error()
}

#[cfg(feature = "tls")]
fn build_client(info: redis::ConnectionInfo, options: &RedisOptions) -> redis::RedisResult<Client> {
    if options.tls_root_certificate.is_none() && options.tls_client_certificate.is_none() {
        return Client::open(info);
    }
    Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls: options.tls_client_certificate.as_ref().map(|(cert, key)| {
                redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }
            }),
            root_cert: options.tls_root_certificate.clone(),
        },
    )
}

#[cfg(not(feature = "tls"))]
fn build_client(
    info: redis::ConnectionInfo,
    _options: &RedisOptions,
) -> redis::RedisResult<Client> {
    Client::open(info)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn addr_and_db_are_read() {
        let t = Target::parse("redis://u:pw@127.0.0.1:6390/3", &RedisOptions::default()).unwrap();
        assert_eq!(t.addr, "127.0.0.1:6390");
        assert_eq!(t.db, 3);
        assert!(!format!("{t:?}").contains("pw"));
    }
}
