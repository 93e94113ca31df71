//! Errors from Redis, mapped to the bus's [`ErrorKind`]s by what redis-rs reports (the
//! server's error code, the I/O failure, the TLS alert), with messages that name the server by
//! its address and never show a password.

use std::fmt;
use std::time::Duration;

use redis::RedisError;

use crate::transport::{ErrorKind, TransportError};

/// Maps an error met while connecting.
pub(crate) fn connect_error(addr: &str, e: RedisError, timeout: Duration) -> TransportError {
    let kind = classify(&e, ErrorKind::Unreachable);
    let message = match kind {
        ErrorKind::Auth => auth_message(addr, &e),
        ErrorKind::Timeout => {
            format!("Redis at {addr} did not complete the connection within {timeout:?}")
        }
        ErrorKind::Unreachable if is_certificate_error(&e) => format!(
            "cannot connect to Redis at {addr}: the TLS handshake failed on a certificate \
             (trust the authority that signed the server's with \
             RedisOptions::tls_root_certificate; show a client certificate with \
             RedisOptions::tls_client_certificate where the server requires one)"
        ),
        ErrorKind::Unreachable => format!("cannot connect to Redis at {addr}"),
        _ => format!("connecting to Redis at {addr} failed"),
    };
    TransportError::new(kind, message).with_source(RedisCause::of(&e))
}

/// Maps an error met on an established connection.
pub(crate) fn command_error(addr: &str, what: &str, e: RedisError) -> TransportError {
    let kind = classify(&e, ErrorKind::Disconnected);
    if let Some(missing) = crate::redis::acl::missing_permission(&e) {
        let message = format!("{what} was refused by Redis at {addr}: {missing}");
        return TransportError::new(kind, message).with_source(RedisCause::of(&e));
    }
    let message = match kind {
        ErrorKind::Auth => auth_message(addr, &e),
        ErrorKind::Disconnected => {
            format!("{what} failed: the connection to Redis at {addr} was lost")
        }
        ErrorKind::Server => match server_said(&e) {
            // The reply is the whole story: no cause repeats it.
            Some(said) => {
                return TransportError::new(
                    kind,
                    format!("{what} failed on Redis at {addr}: {said}"),
                );
            }
            None => format!("{what} failed on Redis at {addr}"),
        },
        _ => format!("{what} failed on Redis at {addr}"),
    };
    TransportError::new(kind, message).with_source(RedisCause::of(&e))
}

/// The server's error reply, code and message (`OOM command not allowed when used memory >
/// 'maxmemory'.`), when `e` is one. The arguments an unknown command's reply repeats are left
/// out: only the bus's own commands are sent, but their arguments are not ours to show.
pub(crate) fn server_said(e: &RedisError) -> Option<String> {
    let code = e.code()?;
    let detail = e.detail().unwrap_or_default().trim();
    let detail = match detail.find(", with args beginning with") {
        Some(cut) => &detail[..cut],
        None => detail,
    };
    Some(if detail.is_empty() {
        code.to_owned()
    } else {
        format!("{code} {detail}")
    })
}

pub(crate) fn timeout_error(addr: &str, what: &str, timeout: Duration) -> TransportError {
    TransportError::new(
        ErrorKind::Timeout,
        format!(
            "{what} timed out: Redis at {} did not answer within {timeout:?}",
            addr
        ),
    )
}

/// What redis-rs said, as the cause of one of our errors.
///
/// A redis-rs error's message repeats its own source's, so it is kept as text: the chain then
/// names each cause once, and redis-rs types stay out of the public API.
#[derive(Debug)]
pub(crate) struct RedisCause(String);

impl RedisCause {
    pub(crate) fn of(e: &RedisError) -> Self {
        RedisCause(redis_text(e))
    }
}

impl fmt::Display for RedisCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedisCause {}

/// What a redis-rs error says, without the ` - Kind` it appends to its description.
pub(crate) fn redis_text(e: &RedisError) -> String {
    let text = e.to_string();
    text.replacen(&format!(" - {:?}", e.kind()), "", 1)
}

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
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
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

/// Whether the TLS handshake failed on a certificate: the server's was not trusted, or the
/// server refused ours or its absence. Told by rustls's own error, which redis-rs keeps as the
/// source of its I/O error (on a cluster's first connections, by the text redis-rs keeps).
#[cfg(feature = "tls")]
pub(crate) fn is_certificate_error(e: &RedisError) -> bool {
    use rustls::AlertDescription as Alert;
    let Some(tls) = rustls_error(e) else {
        // redis-rs's cluster connector keeps only the text of the errors behind "failed to
        // create initial connections": there the text is all there is to read.
        return std::error::Error::source(e).is_none()
            && redis_text(e).to_ascii_lowercase().contains("certificate");
    };
    matches!(
        tls,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(
                Alert::BadCertificate
                    | Alert::UnsupportedCertificate
                    | Alert::CertificateRevoked
                    | Alert::CertificateExpired
                    | Alert::CertificateUnknown
                    | Alert::UnknownCA
                    | Alert::CertificateRequired
            )
    )
}

/// Without TLS no handshake fails on a certificate.
#[cfg(not(feature = "tls"))]
pub(crate) fn is_certificate_error(_: &RedisError) -> bool {
    false
}

/// The rustls error behind a redis-rs I/O error: redis-rs holds the `io::Error` (behind an
/// `Arc`), which holds the rustls error.
#[cfg(feature = "tls")]
fn rustls_error(e: &RedisError) -> Option<&rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let source = std::error::Error::source(e)?;
    let io = match source.downcast_ref::<Shared>() {
        Some(shared) => (**shared).downcast_ref::<std::io::Error>()?,
        None => source.downcast_ref::<std::io::Error>()?,
    };
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether the connection that returned `e` is unusable and must be replaced.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error()
}
