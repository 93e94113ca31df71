//! Shared helpers for the end-to-end tests, examples and benchmarks: a throwaway
//! `redis-server` ([`redis_server::RedisServer`]) and the two-transport test environment.

pub mod redis_server;

use std::sync::atomic::{AtomicU64, Ordering};

use redis_server::RedisServer;

/// Where a runtime test runs: the same test body runs once per transport.
#[derive(Debug)]
pub struct TestEnv {
    /// The URL to connect buses to.
    pub url: String,
    /// The server behind a Redis environment (stopped when the environment is dropped).
    pub server: Option<RedisServer>,
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
        }
    }

    /// A fresh redis-server of its own; `None` (after a message) when redis-server is not
    /// installed and `CI` is not set.
    pub fn redis() -> Option<TestEnv> {
        let server = RedisServer::start_or_skip()?;
        Some(TestEnv {
            url: server.url(),
            server: Some(server),
        })
    }

    /// Whether this is a Redis environment.
    pub fn is_redis(&self) -> bool {
        self.server.is_some()
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
