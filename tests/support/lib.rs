//! Shared helpers for the end-to-end tests, examples and benchmarks: a throwaway
//! `redis-server` ([`redis_server::RedisServer`]), the two-transport test environment, the
//! shared [`Ping`] event and time limits ([`fast`], [`bounded`], [`wait_for`]).

pub mod cluster;
pub mod confirmed;
pub mod examples;
pub mod failover;
pub mod orders;
mod ping;
pub mod postgres;
pub mod python;
pub mod redis_server;
pub mod sentinel;
mod sentinel_process;
mod timing;
pub mod tls_material;

pub use ping::Ping;
pub use timing::{
    CONNECT_TIMEOUT, PUBLISH_DEADLINE, RESPONSE_TIMEOUT, TEST_BOUND, alive_tasks, bounded, fast,
    poll_until, wait_for,
};

use std::sync::atomic::{AtomicU64, Ordering};

use cluster::RedisCluster;
use redis_server::RedisServer;
use sentinel::SentinelSet;

/// Where a runtime test runs: the same test body runs once per transport.
#[derive(Debug)]
pub struct TestEnv {
    /// The URL to connect buses to.
    pub url: String,
    /// The server behind a Redis environment (stopped when the environment is dropped).
    pub server: Option<RedisServer>,
    /// The primary, replica and sentinels behind a Sentinel environment.
    pub sentinel: Option<SentinelSet>,
    /// The nodes behind a Cluster environment.
    pub cluster: Option<RedisCluster>,
}

impl TestEnv {
    /// A fresh in-process hub shared by every bus of the test that connects to `url`.
    pub fn memory() -> TestEnv {
        static N: AtomicU64 = AtomicU64::new(0);
        TestEnv {
            url: format!(
                "memory://test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            server: None,
            sentinel: None,
            cluster: None,
        }
    }

    /// A fresh redis-server of its own; `None` (after a message) when redis-server is not
    /// installed and `CI` is not set.
    pub fn redis() -> Option<TestEnv> {
        let server = RedisServer::start_or_skip()?;
        Some(TestEnv {
            url: server.url(),
            server: Some(server),
            sentinel: None,
            cluster: None,
        })
    }

    /// A primary, a replica and three sentinels of its own, reached through
    /// `redis+sentinel://`; `None` (after a message) when redis-server is not installed and
    /// `CI` is not set.
    pub fn sentinel() -> Option<TestEnv> {
        let set = SentinelSet::start_or_skip()?;
        Some(TestEnv {
            url: set.url(),
            server: None,
            sentinel: Some(set),
            cluster: None,
        })
    }

    /// A Redis Cluster of its own (three primaries, three replicas), reached through
    /// `redis+cluster://`; `None` (after a message) when redis-server is not installed and
    /// `CI` is not set.
    pub fn cluster() -> Option<TestEnv> {
        let cluster = RedisCluster::start_or_skip()?;
        Some(TestEnv {
            url: cluster.url(),
            server: None,
            sentinel: None,
            cluster: Some(cluster),
        })
    }

    /// Whether this is a Redis environment (of any shape).
    pub fn is_redis(&self) -> bool {
        self.server.is_some() || self.sentinel.is_some() || self.cluster.is_some()
    }

    /// Takes the server that serves `channel` away and brings service back: restarts a single
    /// server, kills the primary behind Sentinel and waits for the failover, kills the primary
    /// that owns `channel`'s slot in a cluster and waits for its replica to take over.
    ///
    /// # Panics
    ///
    /// For an in-process environment, or when service does not come back within 30 s.
    #[track_caller]
    pub fn restart(&mut self, channel: &str) {
        let within = std::time::Duration::from_secs(30);
        if let Some(server) = self.server.as_mut() {
            server.restart();
        } else if let Some(set) = self.sentinel.as_mut() {
            let old = set.kill_master();
            set.wait_failover(&old, within);
        } else if let Some(cluster) = self.cluster.as_mut() {
            let owner = cluster.owner_of(channel);
            cluster.kill_node(owner);
            cluster.wait_promoted(owner, within);
        } else {
            panic!("an in-process environment has no server to restart");
        }
    }
}

/// Runs each listed `async fn(TestEnv)` twice: on the in-process transport and on a real
/// redis-server, as `memory::NAME` and `redis::NAME`.
#[macro_export]
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestEnv::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::TestEnv::redis() {
                        super::$name(env).await;
                    }
                }
            )*
        }
    };
}

/// Runs each listed `async fn(TestEnv)` on every transport: in-process, a redis-server,
/// Redis behind Sentinel and a Redis Cluster, as `memory::NAME`, `redis::NAME`,
/// `sentinel::NAME` and `cluster::NAME`.
#[macro_export]
macro_rules! on_every_transport {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_transports!($($name),*);
        mod sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::TestEnv::sentinel() {
                        super::$name(env).await;
                    }
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::TestEnv::cluster() {
                        super::$name(env).await;
                    }
                }
            )*
        }
    };
}

/// Whether the tests run in CI (`CI` is `true` or `1`), where a missing redis-server, openssl
/// or Python is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Collects what handlers saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct Seen<T> {
    items: std::sync::Arc<std::sync::Mutex<Vec<T>>>,
}

impl<T: Clone> Seen<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Seen {
            items: Default::default(),
        }
    }

    /// Records one item.
    pub fn push(&self, item: T) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(item);
    }

    /// How many items were recorded.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of what was recorded, in order.
    pub fn snapshot(&self) -> Vec<T> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// For the examples: connects, or fails with a hint on how to get a server (the URL shown
/// without its password).
pub async fn connect(
    builder: eventbus::EventBusBuilder,
    url: &str,
) -> anyhow::Result<eventbus::EventBus> {
    builder.connect(url).await.map_err(|e| {
        anyhow::anyhow!(
            "could not connect to {}: {e}\nhint: start a server with `redis-server --port 6379 --save '' &`, or set REDIS_URL",
            eventbus::transport::redact_url(url)
        )
    })
}
