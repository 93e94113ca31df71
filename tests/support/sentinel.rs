//! A throwaway Sentinel deployment for tests: a primary, one replica and three sentinels, all
//! on free loopback ports, torn down on drop.
//!
//! ```no_run
//! use eventbus_suite::sentinel::SentinelSet;
//!
//! let Some(mut set) = SentinelSet::start_or_skip() else {
//!     return; // redis-server is not installed (and CI is not set)
//! };
//! let url = set.url(); // redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/eventbus
//! let old = set.master_addr();
//! set.kill_master();
//! let new = set.wait_failover(&old, std::time::Duration::from_secs(20));
//! assert_ne!(old, new);
//! ```
//!
//! The sentinels watch the primary with a quorum of 2, `down-after-milliseconds 1000` and
//! `failover-timeout 3000`, so a killed primary is replaced by its replica within a few
//! seconds. Every wait has a deadline and polls; none sleeps blindly.
//!
//! [`SentinelSet::builder`] also starts the set TLS-only (every process with `port 0`,
//! `tls-port` and `tls-replication yes`, certificates of one authority), with a password on
//! the data nodes, or with a password on the sentinels (`requirepass` in sentinel.conf);
//! [`SentinelSet::url`] then carries what a client needs:
//!
//! ```no_run
//! use eventbus_suite::sentinel::SentinelSet;
//!
//! let Some(set) = SentinelSet::builder()
//!     .tls(true)
//!     .password("data-pw")
//!     .sentinel_password("sentinel-pw")
//!     .start_or_skip()
//! else {
//!     return;
//! };
//! // rediss+sentinel://:data-pw@127.0.0.1:S1,.../eventbus?sentinel_password=sentinel-pw
//! let url = set.url();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::redis_server::{
    RedisServer, RedisServerBuilder, installed, skip_missing_server, wait_until,
};
use crate::sentinel_process::{Sentinel, SentinelConfig};
use crate::tls_material::TlsMaterial;

/// The master name the sentinels monitor.
pub const MASTER_NAME: &str = "eventbus";

/// How long start-up may take before it is a failure.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A primary, one replica and three sentinels.
pub struct SentinelSet {
    /// The data nodes: the primary first, then the replica (the roles change on failover).
    nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    config: SentinelConfig,
}

/// Options for a [`SentinelSet`]: TLS, the data nodes' password, the sentinels' password.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SentinelSetBuilder {
    tls: bool,
    password: Option<String>,
    sentinel_password: Option<String>,
}

impl SentinelSetBuilder {
    /// Every process TLS-only, with certificates of one shared authority
    /// ([`SentinelSet::tls_material`]); the URL is `rediss+sentinel://`.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The data nodes require this password (`requirepass`, `masterauth`); the sentinels know
    /// it (`sentinel auth-pass`), and the URL carries it before `@`.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// The sentinels require this password (`requirepass` in sentinel.conf); the URL carries it
    /// as `?sentinel_password=`.
    pub fn sentinel_password(mut self, password: &str) -> Self {
        self.sentinel_password = Some(password.to_owned());
        self
    }

    /// Starts the set; `None` (after a message) when redis-server is missing and `CI` is not
    /// set. In CI a missing binary is a failure.
    pub fn start_or_skip(self) -> Option<SentinelSet> {
        if !installed() {
            skip_missing_server(crate::in_ci());
            return None;
        }
        Some(self.start())
    }

    /// Starts the set and waits until every sentinel knows the primary, its replica and the
    /// two other sentinels, so a failover can be agreed on.
    ///
    /// # Panics
    ///
    /// When a process does not start or the set is not ready within 30 s.
    #[track_caller]
    pub fn start(self) -> SentinelSet {
        let config = SentinelConfig {
            tls: self.tls.then(|| Arc::new(TlsMaterial::generate())),
            data_password: self.password,
            password: self.sentinel_password,
        };
        let primary = data_node(&config).start();
        let port = primary.port().to_string();
        let replica = data_node(&config)
            .args(&["--replicaof", "127.0.0.1", &port])
            .start();
        wait_until(START_LIMIT, "the replica to sync with the primary", || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels = (0..3)
            .map(|_| Sentinel::start(primary.port(), &config))
            .collect();
        let set = SentinelSet {
            nodes: vec![primary, replica],
            sentinels,
            config,
        };
        set.wait_ready();
        set
    }
}

/// The options of a data node: TLS-only with replication over TLS, and the password, as the
/// set asks.
fn data_node(config: &SentinelConfig) -> RedisServerBuilder {
    let mut builder = RedisServer::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_shared(tls).args(&["--tls-replication", "yes"]);
    }
    if let Some(pw) = &config.data_password {
        builder = builder.password(pw).args(&["--masterauth", pw]);
    }
    builder
}

impl fmt::Debug for SentinelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelSet")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| n.port()).collect::<Vec<_>>(),
            )
            .field(
                "sentinels",
                &self.sentinels.iter().map(|s| s.port).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SentinelSet {
    /// Starts the deployment; `None` (after a message) when redis-server is missing and `CI`
    /// is not set. In CI a missing binary is a failure.
    pub fn start_or_skip() -> Option<SentinelSet> {
        Self::builder().start_or_skip()
    }

    /// Starts the deployment and waits until every sentinel knows the primary, its replica
    /// and the two other sentinels, so a failover can be agreed on.
    ///
    /// # Panics
    ///
    /// When a process does not start or the set is not ready within 30 s.
    #[track_caller]
    pub fn start() -> SentinelSet {
        Self::builder().start()
    }

    /// Options for a set: TLS, passwords.
    pub fn builder() -> SentinelSetBuilder {
        SentinelSetBuilder::default()
    }

    fn wait_ready(&self) {
        for s in &self.sentinels {
            wait_until(START_LIMIT, "each sentinel to know the whole set", || {
                let replicas = s.try_cli(&["SENTINEL", "REPLICAS", MASTER_NAME]);
                let others = s.try_cli(&["SENTINEL", "SENTINELS", MASTER_NAME]);
                match (replicas, others) {
                    (Ok(r), Ok(o)) => {
                        r.lines().filter(|l| *l == "name").count() == 1
                            && o.lines().filter(|l| *l == "name").count() == 2
                    }
                    _ => false,
                }
            });
        }
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/eventbus`; for a TLS set
    /// `rediss+sentinel://`, with the data nodes' password `:PASSWORD@`, with the sentinels'
    /// `?sentinel_password=PASSWORD`.
    pub fn url(&self) -> String {
        self.url_with_sentinel_password(self.config.password.as_deref())
    }

    /// [`url`](Self::url) with `sentinel_password` given as `password` (or left out), to try
    /// a wrong or a missing one.
    pub fn url_with_sentinel_password(&self, password: Option<&str>) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let scheme = if self.config.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = match &self.config.data_password {
            Some(pw) => format!(":{pw}@"),
            None => String::new(),
        };
        let query = match password {
            Some(pw) => format!("?sentinel_password={pw}"),
            None => String::new(),
        };
        format!(
            "{scheme}+sentinel://{auth}{}/{MASTER_NAME}{query}",
            hosts.join(",")
        )
    }

    /// The authority behind every certificate of a TLS set.
    ///
    /// # Panics
    ///
    /// When the set does not serve TLS.
    #[track_caller]
    pub fn tls_material(&self) -> &TlsMaterial {
        self.config
            .tls
            .as_deref()
            .expect("the sentinel set does not serve TLS")
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The primary's `host:port`, as the first sentinel that answers says
    /// (`SENTINEL get-master-addr-by-name`).
    ///
    /// # Panics
    ///
    /// When no sentinel answers.
    #[track_caller]
    pub fn master_addr(&self) -> String {
        let mut last = String::new();
        for s in &self.sentinels {
            match s.try_cli(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]) {
                Ok(out) => {
                    let parts: Vec<&str> = out.lines().map(str::trim).collect();
                    if let [host, port] = parts[..] {
                        return format!("{host}:{port}");
                    }
                    last = out;
                }
                Err(e) => last = e,
            }
        }
        panic!("no sentinel named the primary: {last}");
    }

    /// The data nodes: the primary and the replica (in start order; roles change on failover).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The data node serving at `addr` (`host:port`), if it is one of ours.
    pub fn node(&self, addr: &str) -> Option<&RedisServer> {
        self.nodes
            .iter()
            .find(|n| addr.ends_with(&format!(":{}", n.port())))
    }

    /// Kills the current primary at once (SIGKILL); returns its address.
    ///
    /// # Panics
    ///
    /// When the primary the sentinels name is not one of ours.
    #[track_caller]
    pub fn kill_master(&mut self) -> String {
        let addr = self.master_addr();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| addr.ends_with(&format!(":{}", n.port())))
            .unwrap_or_else(|| panic!("the primary {addr} is not one of ours"));
        node.kill();
        addr
    }

    /// Waits until the sentinels name a primary other than `old` and it answers as a primary;
    /// returns its address.
    ///
    /// # Panics
    ///
    /// When that does not happen within `within`.
    #[track_caller]
    pub fn wait_failover(&self, old: &str, within: Duration) -> String {
        let mut new = String::new();
        wait_until(within, "the sentinels to promote the replica", || {
            new = self.master_addr();
            new != old
                && self.node(&new).is_some_and(|n| {
                    n.is_running() && n.cli(&["ROLE"]).lines().next() == Some("master")
                })
        });
        new
    }
}
