//! The certificates of [`RedisOptions`] (a private root, a client certificate) handed to
//! redis-rs: one conversion for single servers, the sentinels, their data nodes and the nodes
//! of a cluster. Without the `tls` feature there are none, and `rediss` URLs are refused
//! before any of this runs.

use redis::{Client, ConnectionInfo, RedisResult};

use crate::redis::RedisOptions;

/// The options' certificates in redis-rs's form; `None` when the options give none (the
/// system's roots are trusted then, and no client certificate is shown).
#[cfg(feature = "tls")]
pub(crate) fn certificates(options: &RedisOptions) -> Option<redis::TlsCertificates> {
    let (root, client) = (
        &options.tls_root_certificate,
        &options.tls_client_certificate,
    );
    if root.is_none() && client.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.clone(),
        }),
        root_cert: root.clone(),
    })
}

/// A client for one server, with the options' certificates when it is reached over TLS.
#[cfg(feature = "tls")]
pub(crate) fn client(info: ConnectionInfo, options: &RedisOptions) -> RedisResult<Client> {
    let info = info.set_tcp_settings(crate::redis::conn::tcp::settings());
    match certificates(options) {
        Some(certificates) => Client::build_with_tls(info, certificates),
        None => Client::open(info),
    }
}

/// A client for one server (no TLS without the `tls` feature).
#[cfg(not(feature = "tls"))]
pub(crate) fn client(info: ConnectionInfo, _options: &RedisOptions) -> RedisResult<Client> {
    Client::open(info.set_tcp_settings(crate::redis::conn::tcp::settings()))
}
