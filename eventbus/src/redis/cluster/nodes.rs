//! Redis Cluster: `redis+cluster://` URLs and the clients that reach the nodes.
//!
//! `redis+cluster://[user:password@]host:port[,host:port...]/` (`rediss+cluster://` for TLS):
//! the seed nodes; the others are learnt from them. A cluster has database 0 only.
//!
//! Over TLS every connection, to a seed or to a node learnt from it, the subscriber's
//! included, uses TLS with the certificates of [`RedisOptions`] (`tls_root_certificate` for a
//! private authority, `tls_client_certificate` for mutual TLS); `#insecure` at the end of the
//! URL skips verification for all of them. `tests/scale_tls.rs` runs against a TLS-only
//! cluster (`port 0`, `tls-port`, `tls-cluster yes`, `tls-replication yes`).
//!
//! Commands run on redis-rs's cluster connection, which sends each to the node serving its
//! key's slot (the stream key of a durable type, the channel of a sharded publish) and follows
//! redirections and failovers; without TLS, the publish path's commands go on a lane to the
//! primary serving their slot instead (`lanes.rs`). Typed events with a fixed channel are published with
//! `SPUBLISH` (sharded pub/sub: a message travels only within its slot's shard); keyed events
//! and raw payloads with classic `PUBLISH`, which reaches every node and so pattern
//! subscribers. Channels are subscribed both ways; see `cluster_subscriber.rs`.

use std::fmt;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{IntoConnectionInfo, ProtocolVersion, RedisError};
use tokio_util::task::TaskTracker;

use crate::redis::RedisOptions;
use crate::redis::cluster::lanes::NodeLanes;
use crate::transport::url::check::{check_fragment, check_query, check_userinfo};
use crate::transport::url::{Url, check_host_port};

/// The seed nodes and the clients made from them.
pub(crate) struct ClusterNodes {
    /// The seed nodes' URLs, credentials included.
    nodes: Vec<String>,
    options: RedisOptions,
    /// Commands: publishes, streams, queries.
    commands: ClusterClient,
    /// `host:port,host:port`, for messages.
    pub(crate) hosts: String,
}

impl fmt::Debug for ClusterNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNodes")
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Reads a `redis+cluster://` or `rediss+cluster://` URL into one plain `redis[s]://` URL
/// per seed node, credentials included. The error says what is wrong, never showing the
/// password.
pub(crate) fn parse_url(url: &Url<'_>) -> Result<(Vec<String>, bool), String> {
    let tls = url.scheme().as_deref() == Some("rediss+cluster");
    check_userinfo(url)?;
    let path = url.path();
    if !path.trim_matches('/').is_empty() {
        return Err(format!(
            "a cluster has only database 0: the path `{path}` is not taken \
             (redis+cluster://host:port,host:port/)"
        ));
    }
    check_query(url.query().unwrap_or_default(), false)?;
    check_fragment(url.fragment(), tls)?;
    let scheme = if tls { "rediss" } else { "redis" };
    let auth = url
        .normalized_userinfo()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let mut tail = String::new();
    for (mark, part) in [('?', url.query()), ('#', url.fragment())] {
        if let Some(part) = part {
            tail.push(mark);
            tail.push_str(part);
        }
    }
    let mut nodes = Vec::new();
    for host in url.hosts().split(',') {
        if host.is_empty() {
            return Err(
                "a node address is empty (two commas in a row, or a trailing comma?)".into(),
            );
        }
        check_host_port(host)?;
        nodes.push(format!("{scheme}://{auth}{host}/{tail}"));
    }
    Ok((nodes, tls))
}

impl ClusterNodes {
    /// The clients for the seed nodes of a parsed URL.
    pub(crate) fn new(
        nodes: &[String],
        options: &RedisOptions,
    ) -> Result<ClusterNodes, RedisError> {
        let mut hosts = Vec::new();
        for node in nodes {
            let info = node.as_str().into_connection_info()?;
            hosts.push(info.addr().to_string());
        }
        let commands = builder(nodes, options).build()?;
        Ok(ClusterNodes {
            nodes: nodes.to_vec(),
            options: options.clone(),
            commands,
            hosts: hosts.join(","),
        })
    }

    /// The client for commands.
    pub(crate) fn commands(&self) -> &ClusterClient {
        &self.commands
    }

    /// The publish lanes to the primaries (see `lanes.rs`), reached with the first seed's
    /// settings; `None` over TLS.
    pub(crate) fn lanes(&self, tasks: &TaskTracker, timeout: Duration) -> Option<NodeLanes> {
        let info = self.nodes.first()?.as_str().into_connection_info().ok()?;
        NodeLanes::new(info, tasks, timeout)
    }

    /// A client for a subscriber connection: RESP3, its pushes (messages, subscription
    /// changes, disconnections) going to `pushes`.
    pub(crate) fn subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<ClusterClient, RedisError> {
        builder(&self.nodes, &self.options)
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
    }
}

fn builder(nodes: &[String], options: &RedisOptions) -> ClusterClientBuilder {
    let builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(options.connect_timeout)
        .tcp_settings(crate::redis::conn::tcp::settings());
    with_certificates(builder, options)
}

/// The options' certificates for every node (the seeds and those learnt from them).
#[cfg(feature = "tls")]
fn with_certificates(
    builder: ClusterClientBuilder,
    options: &RedisOptions,
) -> ClusterClientBuilder {
    match crate::redis::conn::tls::certificates(options) {
        Some(certificates) => builder.certs(certificates),
        None => builder,
    }
}

#[cfg(not(feature = "tls"))]
fn with_certificates(builder: ClusterClientBuilder, _: &RedisOptions) -> ClusterClientBuilder {
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_url(url: &str) -> Result<(Vec<String>, bool), String> {
        super::parse_url(&Url::parse(url))
    }

    #[test]
    fn cluster_urls_are_read() {
        let (nodes, tls) =
            parse_url("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001/").unwrap();
        assert_eq!(
            nodes,
            vec![
                "redis://:s3cret@10.0.0.1:7000/".to_owned(),
                "redis://:s3cret@10.0.0.2:7001/".to_owned()
            ]
        );
        assert!(!tls);
    }

    #[test]
    fn cluster_url_mistakes_are_named() {
        for (url, expected) in [
            ("redis+cluster://h:1/3", "only database 0"),
            ("redis+cluster://h:1,,h:2/", "a node address is empty"),
            ("redis+cluster://h:x/", "the port `x` is not a number"),
            ("redis+cluster://:s3c/ret@h:1/", "unencoded `/`"),
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(expected), "{url}: {e}");
            assert!(!e.contains("s3c"), "{url}: {e}");
        }
    }
}
