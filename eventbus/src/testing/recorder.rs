//! A transport that records what its bus published, around the transport that carries it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::Topic;
use crate::sync::lock;
use crate::transport::{
    BoxFuture, Capabilities, DeadLetterStore, DedupeStore, GroupSpec, GroupStatus, PubSubAdmin,
    Transport, TransportError,
};

/// One message the bus under test sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The channel, or the stream of a durable type.
    pub channel: String,
    /// The bytes sent: the envelope's JSON.
    pub payload: Bytes,
    /// Whether it was appended to a stream (a durable type) rather than published.
    pub durable: bool,
}

/// What was published, in order.
pub(crate) type Log = Arc<Mutex<Vec<Published>>>;

/// Delegates everything to `inner`, and logs each publish and append that succeeded.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) inner: Arc<dyn Transport>,
    pub(crate) log: Log,
}

impl Recorder {
    fn note(&self, channel: &str, payload: Bytes, durable: bool) {
        lock(&self.log).push(Published {
            channel: channel.to_owned(),
            payload,
            durable,
        });
    }
}

impl Transport for Recorder {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let receivers = self.inner.publish(channel, payload.clone()).await?;
            self.note(channel, payload, false);
            Ok(receivers)
        })
    }

    fn publish_sharded<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let receivers = self.inner.publish_sharded(channel, payload.clone()).await?;
            self.note(channel, payload, false);
            Ok(receivers)
        })
    }

    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        self.inner.subscribe(topics)
    }

    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        self.inner.unsubscribe(topics)
    }

    fn ready(&self, within: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.ready(within)
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>> {
        self.inner.ping()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.close()
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let id = self.inner.append(stream, payload.clone()).await?;
            self.note(stream, payload, true);
            Ok(id)
        })
    }

    fn join<'a>(&'a self, group: &'a GroupSpec) -> BoxFuture<'a, Result<(), TransportError>> {
        self.inner.join(group)
    }

    fn leave<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        self.inner.leave(group)
    }

    fn dead_letter_store(&self) -> Option<&dyn DeadLetterStore> {
        self.inner.dead_letter_store()
    }

    fn pubsub_admin(&self) -> Option<&dyn PubSubAdmin> {
        self.inner.pubsub_admin()
    }

    fn dedupe_store(&self) -> Option<&dyn DedupeStore> {
        self.inner.dedupe_store()
    }

    fn scheduler(&self) -> Option<&dyn crate::transport::Scheduler> {
        self.inner.scheduler()
    }

    fn stream_groups<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GroupStatus>, TransportError>> {
        self.inner.stream_groups(stream)
    }
}
