//! Pub/sub introspection: an optional part of a transport (`PUBSUB CHANNELS`, `NUMSUB`,
//! `NUMPAT` on Redis).

use super::{BoxFuture, TransportError};

/// Queries about the server's pub/sub state.
pub trait PubSubAdmin: Send + Sync {
    /// Active channels (`PUBSUB CHANNELS [pattern]`), sorted.
    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>>;

    /// Subscriber counts per channel (`PUBSUB NUMSUB`), pattern subscribers not included.
    fn numsub<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, TransportError>>;

    /// The number of pattern subscriptions of all clients (`PUBSUB NUMPAT`).
    fn numpat(&self) -> BoxFuture<'_, Result<u64, TransportError>>;
}
