//! Where to connect: the URL's deployment (one server, Sentinel, a cluster) and the
//! `redis::Client` for it.

use std::fmt;

use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError};

use crate::redis::RedisOptions;
use crate::redis::cluster::nodes::{self, ClusterNodes};
use crate::redis::errors::{is_connection_error, redis_text};
use crate::redis::sentinel::discovery::{self, Sentinels};
use crate::transport::url::Url;
use crate::transport::url::check::check_url;
use crate::transport::{ErrorKind, TransportError};

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

impl Target {
    pub(crate) fn parse(url: &str, options: &RedisOptions) -> Result<Target, TransportError> {
        let redacted = Url::parse(url).to_string();
        let invalid = |why: &dyn fmt::Display| {
            TransportError::new(
                ErrorKind::InvalidUrl,
                format!("invalid Redis URL `{redacted}`: {why}"),
            )
        };
        let url = check_url(url).map_err(|why| invalid(&why))?;
        let scheme = url.scheme().unwrap_or_default();
        if scheme.ends_with("+cluster") {
            return Self::in_cluster(&url, redacted.clone(), options).map_err(|why| invalid(&why));
        }
        if scheme.ends_with("+sentinel") {
            return Self::sentinel(&url, redacted.clone(), options).map_err(|why| invalid(&why));
        }
        let tls = scheme == "rediss";
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(
                &"rediss:// needs the `tls` feature of eventbus (`features = [\"tls\"]`)",
            ));
        }
        let parsed = redis::parse_redis_url(&url.normalized())
            .ok_or_else(|| invalid(&"not a valid URL (check the host name)"))?;
        let info = parsed
            .into_connection_info()
            .map_err(|e| invalid(&redis_text(&e)))?;
        let addr = info.addr().to_string();
        let db = info.redis_settings().db();
        let client =
            crate::redis::conn::tls::client(info, options).map_err(|e| invalid(&redis_text(&e)))?;
        if tls && url.fragment() == Some("insecure") {
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
    fn sentinel(url: &Url<'_>, redacted: String, options: &RedisOptions) -> Result<Target, String> {
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
    fn in_cluster(
        url: &Url<'_>,
        redacted: String,
        options: &RedisOptions,
    ) -> Result<Target, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::errors::chain_text;

    #[test]
    fn query_passwords_are_redacted() {
        let redact = crate::transport::redact_url;
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
        assert_eq!(redact("redis://u:s3cret@h:1/0"), "redis://u:***@h:1/0");
        let o = RedisOptions::default();
        let t = Target::parse("redis+unix:///run/redis.sock?user=ops@corp&pass=s3cret", &o);
        assert_eq!(
            t.unwrap().redacted,
            "redis+unix:///run/redis.sock?user=ops@corp&pass=***"
        );
    }

    /// Without the `tls` feature every `rediss` scheme is refused, naming the feature and
    /// keeping the password out.
    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_urls_name_the_missing_feature() {
        let o = RedisOptions::default();
        for url in [
            "rediss://:s3cret@h:1",
            "rediss+sentinel://:s3cret@h:1/main",
            "rediss+cluster://:s3cret@h:1,h:2",
        ] {
            let e = Target::parse(url, &o).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{url}: {e}");
            assert!(e.to_string().contains("needs the `tls` feature"), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
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
            "redis+unix:///run/redis.sock?user=ops@corp&pass=s3cret",
            "redis+sentinel://h:26379/m?sentinel_username=ops@team&sentinel_password=s3cret",
            "redis+cluster://:p@ss@h:1,h:2/",
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 1000,
            ..Default::default()
        })]

        /// The error of a URL the bus refuses, with its source chain, never shows the
        /// password, whatever characters surround it (see `transport::url::tests::secrets`).
        #[test]
        fn no_secret_in_errors((url, secret) in crate::transport::url::tests::secrets::url()) {
            match Target::parse(&url, &RedisOptions::default()) {
                Ok(t) => proptest::prop_assert!(!t.redacted.contains(&secret), "{url}"),
                Err(e) => {
                    let text = chain_text(&e);
                    proptest::prop_assert!(!text.contains(&secret), "{url}: {text}");
                    proptest::prop_assert!(!format!("{e:?}").contains(&secret), "{e:?}");
                }
            }
        }
    }
}
