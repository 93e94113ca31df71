//! Redis Sentinel: `redis+sentinel://` URLs, and finding the current primary through the
//! sentinels.
//!
//! ```text
//! redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master-name>[/db]
//!     [?protocol=resp3][&sentinel_username=USER][&sentinel_password=PASSWORD]
//! ```
//!
//! `rediss+sentinel://` speaks TLS to the sentinels and the data nodes alike, with the
//! certificates of [`RedisOptions`] for both (`#insecure` skips the checks on both). The port
//! of a sentinel defaults to 26379. The user name, password, database and protocol are those
//! of the data nodes; the sentinels are asked without credentials unless the query gives
//! theirs, `sentinel_password` (and `sentinel_username` for an ACL user), which are never
//! sent to the data nodes (see `sentinel_auth.rs`).
//!
//! Every connection the transport makes (publisher, subscriber, stream readers, on the first
//! connect and on every reconnect) first asks the sentinels, one after the other, for the
//! primary's address (`SENTINEL get-master-addr-by-name`) and checks that the server there
//! says it is a primary (`ROLE`). So after a failover the connections that lose the old primary
//! (or get `READONLY` from it once it was demoted) move to the new one by themselves. When the
//! lookup fails on credentials, the sentinels are asked alone, so the error says whether they
//! or the primary refused.

use std::fmt;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, TlsMode};

use crate::redis::RedisOptions;
use crate::redis::errors::{RedisCause, classify, is_certificate_error, redis_text};
use crate::redis::sentinel::auth::{self, SentinelAuth};
use crate::transport::url::check::{check_db, check_fragment, check_query, check_userinfo};
use crate::transport::url::{Url, check_host_port};
use crate::transport::{ErrorKind, TransportError};

/// The port a sentinel listens on when the URL names none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// What a `redis+sentinel://` URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    /// The sentinels, `(host, port)`.
    pub(crate) sentinels: Vec<(String, u16)>,
    /// The name the sentinels know the primary by.
    pub(crate) master: String,
    /// A plain `redis[s]://` URL with the data nodes' credentials, database and protocol (its
    /// host is the first sentinel's, and only a placeholder).
    pub(crate) node_url: String,
    pub(crate) tls: bool,
    pub(crate) insecure: bool,
    /// The sentinels' own credentials (`sentinel_username`, `sentinel_password`).
    pub(crate) auth: SentinelAuth,
}

/// Reads a `redis+sentinel://` or `rediss+sentinel://` URL. The error says what is wrong,
/// never showing the password.
pub(crate) fn parse_url(url: &Url<'_>) -> Result<SentinelUrl, String> {
    let tls = url.scheme().as_deref() == Some("rediss+sentinel");
    check_userinfo(url)?;
    let (auth, query) = SentinelAuth::take_from_query(url.query().unwrap_or_default())?;
    let Some(path) = url.path().strip_prefix('/') else {
        return Err(
            "the master name is missing: redis+sentinel://host:26379,host:26379/MASTER".to_owned(),
        );
    };
    let sentinels = url
        .hosts()
        .split(',')
        .map(sentinel_addr)
        .collect::<Result<Vec<_>, _>>()?;
    let (master, db) = match path.trim_end_matches('/').split_once('/') {
        Some((m, db)) => (m, Some(db)),
        None => (path.trim_end_matches('/'), None),
    };
    check_master_name(master)?;
    if let Some(db) = db {
        check_db(
            db,
            "the path of a Redis URL is the database number: redis://host:6379/0",
        )?;
    }
    check_query(&query, false)?;
    check_fragment(url.fragment(), tls)?;
    let first = url.hosts().split(',').next().unwrap_or_default();
    let mut node_url = format!("{}://", if tls { "rediss" } else { "redis" });
    if let Some(userinfo) = url.normalized_userinfo() {
        node_url.push_str(&userinfo);
        node_url.push('@');
    }
    node_url.push_str(&format!("{first}/{}", db.unwrap_or("0")));
    if !query.is_empty() {
        node_url.push('?');
        node_url.push_str(&query);
    }
    if let Some(f) = url.fragment() {
        node_url.push('#');
        node_url.push_str(f);
    }
    Ok(SentinelUrl {
        sentinels,
        master: master.to_owned(),
        node_url,
        tls,
        insecure: url.fragment() == Some("insecure"),
        auth,
    })
}

/// One `host[:port]` of the sentinel list.
fn sentinel_addr(host_port: &str) -> Result<(String, u16), String> {
    if host_port.is_empty() {
        return Err(
            "a sentinel address is empty (two commas in a row, or a trailing comma?)".into(),
        );
    }
    check_host_port(host_port)?;
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.ends_with(']') => (h, p.parse().ok()),
        _ => (host_port, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port.unwrap_or(DEFAULT_SENTINEL_PORT)))
}

fn check_master_name(master: &str) -> Result<(), String> {
    if master.is_empty() {
        return Err(
            "the master name is missing: redis+sentinel://host:26379,host:26379/MASTER".to_owned(),
        );
    }
    match master.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(c) => Err(format!("the master name `{master}` holds {c:?}")),
        None => Ok(()),
    }
}

/// Asks the sentinels for the primary, and makes clients for it.
pub(crate) struct Sentinels {
    client: tokio::sync::Mutex<SentinelClient>,
    /// The same, asking for replicas.
    replicas: tokio::sync::Mutex<SentinelClient>,
    /// Each sentinel with its credentials: asked alone when a lookup fails on credentials.
    each: Vec<ConnectionInfo>,
    auth: SentinelAuth,
    options: RedisOptions,
    /// `host:port,host:port`, for messages.
    pub(crate) hosts: String,
    pub(crate) master: String,
}

impl fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinels")
            .field("hosts", &self.hosts)
            .field("master", &self.master)
            .finish()
    }
}

impl Sentinels {
    /// The sentinel client for a parsed URL: the credentials, database, protocol and TLS
    /// settings go to the data nodes, the `sentinel_*` credentials and TLS settings to the
    /// sentinels.
    pub(crate) fn new(url: &SentinelUrl, options: &RedisOptions) -> Result<Sentinels, RedisError> {
        let hosts: Vec<String> = url
            .sentinels
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect();
        let each = sentinel_addrs(url)
            .map(|addr| {
                Ok(addr
                    .into_connection_info()?
                    .set_redis_settings(url.auth.settings()))
            })
            .collect::<Result<_, RedisError>>()?;
        Ok(Sentinels {
            client: tokio::sync::Mutex::new(client(url, options, SentinelServerType::Master)?),
            replicas: tokio::sync::Mutex::new(client(url, options, SentinelServerType::Replica)?),
            each,
            auth: url.auth.clone(),
            options: options.clone(),
            hosts: hosts.join(","),
            master: url.master.clone(),
        })
    }

    /// A client for the current primary: asks the sentinels in turn, and checks the server
    /// they name is a primary.
    pub(crate) async fn master(&self) -> Result<Client, TransportError> {
        let found = self.client.lock().await.async_get_client().await;
        match found {
            Ok(client) => Ok(client),
            Err(e) => Err(self.lookup_error(&e).await),
        }
    }

    /// A client for a random replica, or for the primary when no replica is available.
    pub(crate) async fn replica_or_master(&self) -> Result<Client, TransportError> {
        let found = self.replicas.lock().await.async_get_client().await;
        match found {
            Ok(client) => Ok(client),
            Err(e) => {
                tracing::debug!(error = %redis_text(&e), "no replica available; using the primary");
                self.master().await
            }
        }
    }

    async fn lookup_error(&self, e: &RedisError) -> TransportError {
        let kind = match classify(e, ErrorKind::Unreachable) {
            ErrorKind::Server | ErrorKind::InvalidUrl => ErrorKind::Unreachable,
            kind => kind,
        };
        if kind == ErrorKind::Auth {
            return self.auth_error(e).await;
        }
        let text = redis_text(e);
        let message = if is_certificate_error(e) {
            format!(
                "finding the primary `{}` through the sentinels {} failed: the TLS handshake \
                 failed on a certificate (trust the authority that signed the sentinels' and \
                 the data nodes' with RedisOptions::tls_root_certificate)",
                self.master, self.hosts
            )
        } else if text.contains("MasterNameNotFound") || text.contains("not found") {
            format!(
                "none of the sentinels {} knows a primary named `{}`",
                self.hosts, self.master
            )
        } else {
            format!(
                "finding the primary `{}` through the sentinels {} failed",
                self.master, self.hosts
            )
        };
        TransportError::new(kind, message).with_source(RedisCause::of(e))
    }

    /// A lookup failed on credentials: the sentinels' or the primary's, which asking the
    /// sentinels alone tells apart.
    async fn auth_error(&self, e: &RedisError) -> TransportError {
        if let Some(refusal) = auth::refused(&self.each, &self.options).await {
            let message = auth::refusal_message(&self.hosts, &refusal, &self.auth);
            return TransportError::new(ErrorKind::Auth, message)
                .with_source(RedisCause::of(&refusal));
        }
        let message = format!(
            "the primary `{}` (found through the sentinels {}) refused the URL's credentials \
             (the user name and password before `@`, which are the data nodes'): wrong or \
             missing password, or the user is disabled",
            self.master, self.hosts
        );
        TransportError::new(ErrorKind::Auth, message).with_source(RedisCause::of(e))
    }
}

/// The sentinels' addresses, over TLS for `rediss+sentinel://`.
fn sentinel_addrs(url: &SentinelUrl) -> impl Iterator<Item = ConnectionAddr> + '_ {
    url.sentinels.iter().map(|(host, port)| match url.tls {
        true => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: url.insecure,
            tls_params: None,
        },
        false => ConnectionAddr::Tcp(host.clone(), *port),
    })
}

/// A sentinel client for `server_type` servers: the credentials, database, protocol and TLS
/// settings go to the data nodes, the `sentinel_*` credentials to the sentinels.
fn client(
    url: &SentinelUrl,
    options: &RedisOptions,
    server_type: SentinelServerType,
) -> Result<SentinelClient, RedisError> {
    let info = url.node_url.as_str().into_connection_info()?;
    let node = info.redis_settings();
    let mut builder = SentinelClientBuilder::new(sentinel_addrs(url), &url.master, server_type)?
        .set_client_to_redis_db(node.db())
        .set_client_to_redis_tcp_settings(crate::redis::conn::tcp::settings())
        .set_client_to_redis_protocol(node.protocol());
    if let Some(user) = node.username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = node.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    builder = url.auth.apply(builder);
    if url.tls {
        let mode = if url.insecure {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        };
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
        builder = with_certificates(builder, options);
    }
    builder.build()
}

/// The options' certificates, for the sentinels and the data nodes alike.
#[cfg(feature = "tls")]
fn with_certificates(
    builder: SentinelClientBuilder,
    options: &RedisOptions,
) -> SentinelClientBuilder {
    match crate::redis::conn::tls::certificates(options) {
        Some(certificates) => builder
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_certificates(certificates),
        None => builder,
    }
}

#[cfg(not(feature = "tls"))]
fn with_certificates(builder: SentinelClientBuilder, _: &RedisOptions) -> SentinelClientBuilder {
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_url(url: &str) -> Result<SentinelUrl, String> {
        super::parse_url(&Url::parse(url))
    }

    #[test]
    fn sentinel_urls_are_read() {
        let u = parse_url("redis+sentinel://:s3cret@10.0.0.1,10.0.0.2:26380/mymaster/2").unwrap();
        assert_eq!(
            u.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26379),
                ("10.0.0.2".to_owned(), 26380)
            ]
        );
        assert_eq!(u.master, "mymaster");
        assert_eq!(u.node_url, "redis://:s3cret@10.0.0.1/2");
        assert!(!u.tls);
        let u = parse_url("rediss+sentinel://[::1]:5000/m#insecure").unwrap();
        assert_eq!(u.sentinels, vec![("::1".to_owned(), 5000)]);
        assert!(u.tls && u.insecure);
    }

    #[test]
    fn sentinel_credentials_come_from_the_query() {
        let u =
            parse_url("redis+sentinel://:d4ta@h:1,h:2/m/3?sentinel_password=s%23nt&protocol=resp3")
                .unwrap();
        assert_eq!(u.auth.password.as_deref(), Some("s#nt"));
        assert_eq!(u.auth.username, None);
        // The data nodes keep their own credentials and never see the sentinels'.
        assert_eq!(u.node_url, "redis://:d4ta@h:1/3?protocol=resp3");
        let u = parse_url(
            "rediss+sentinel://h/m?sentinel_username=watcher&sentinel_password=pw#insecure",
        )
        .unwrap();
        assert_eq!(u.auth.username.as_deref(), Some("watcher"));
        assert_eq!(u.auth.password.as_deref(), Some("pw"));
        assert_eq!(u.node_url, "rediss://h/0#insecure");
        assert!(u.insecure);
        let u = parse_url("redis+sentinel://h/m").unwrap();
        assert_eq!(u.auth, SentinelAuth::default());
    }

    #[test]
    fn sentinel_url_mistakes_are_named() {
        for (url, expected) in [
            ("redis+sentinel://h:1", "the master name is missing"),
            ("redis+sentinel://h:1/", "the master name is missing"),
            ("redis+sentinel://h:1,,h:2/m", "a sentinel address is empty"),
            ("redis+sentinel://h:x/m", "the port `x` is not a number"),
            ("redis+sentinel://:s3c/ret@h:1/m", "unencoded `/`"),
            (
                "redis+sentinel://h:1/m/x",
                "the database `x` is not a number",
            ),
            (
                "redis+sentinel://h:1/m?sentinel_password=",
                "`sentinel_password` is empty",
            ),
            (
                "redis+sentinel://h:1/m?sentinel_username=u",
                "needs `sentinel_password`",
            ),
            (
                "redis+sentinel://h:1/m?sentinel_password=s3c&sentinel_password=s3c",
                "given twice",
            ),
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(expected), "{url}: {e}");
            assert!(!e.contains("s3c"), "{url}: {e}");
        }
    }
}
