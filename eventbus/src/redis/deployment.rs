//! What differs between deployments on the subscribing side, chosen once at connect: a single
//! server (also the primary or a replica behind Sentinel) has one pub/sub connection; a Redis
//! Cluster has a cluster subscriber that follows slots across nodes.

use std::sync::Arc;
use std::time::Duration;

use crate::Topic;
use crate::redis::cluster::admin as cluster_admin;
use crate::redis::cluster::subscriber::ClusterSubscriber;
use crate::redis::pubsub::admin;
use crate::redis::pubsub::subscriber::Subscriber;
use crate::redis::shared::Shared;
use crate::transport::{BoxFuture, PubSubAdmin, TransportError};

/// The subscriber a deployment uses.
pub(crate) enum Subscribers {
    /// One pub/sub connection to one server.
    Single(Arc<Subscriber>),
    /// Sharded and classic subscriptions across a cluster's nodes.
    Cluster(Arc<ClusterSubscriber>),
}

/// The pub/sub side of a transport: its subscriber and the server-wide queries.
pub(crate) struct PubSub {
    shared: Arc<Shared>,
    subscribers: Subscribers,
}

impl PubSub {
    /// The pub/sub side of the deployment `shared`'s target names.
    pub(crate) fn new(shared: Arc<Shared>) -> PubSub {
        let subscribers = match shared.target.cluster() {
            Some(_) => Subscribers::Cluster(Arc::default()),
            None => Subscribers::Single(Arc::new(Subscriber::new())),
        };
        PubSub {
            shared,
            subscribers,
        }
    }

    /// Whether channels are sharded (`SPUBLISH` / `SSUBSCRIBE`): on a cluster.
    pub(crate) fn sharded(&self) -> bool {
        matches!(self.subscribers, Subscribers::Cluster(_))
    }

    /// The number of channels and patterns held.
    pub(crate) fn held(&self) -> usize {
        match &self.subscribers {
            Subscribers::Single(s) => s.held(),
            Subscribers::Cluster(c) => c.held(),
        }
    }

    /// The subscriber connection's state, for `Debug`.
    pub(crate) fn state(&self) -> &'static str {
        match &self.subscribers {
            Subscribers::Single(s) => s.link.borrow().name(),
            Subscribers::Cluster(_) => "cluster",
        }
    }

    /// See [`Transport::subscribe`](crate::transport::Transport::subscribe).
    pub(crate) async fn subscribe(&self, topics: &[Topic]) -> Result<(), TransportError> {
        match &self.subscribers {
            Subscribers::Single(s) => s.subscribe(&self.shared, topics).await,
            Subscribers::Cluster(c) => c.subscribe(&self.shared, topics).await,
        }
    }

    /// See [`Transport::unsubscribe`](crate::transport::Transport::unsubscribe).
    pub(crate) async fn unsubscribe(&self, topics: &[Topic]) -> Result<(), TransportError> {
        match &self.subscribers {
            Subscribers::Single(s) => s.unsubscribe(&self.shared, topics).await,
            Subscribers::Cluster(c) => c.unsubscribe(&self.shared, topics).await,
        }
    }

    /// See [`Transport::ready`](crate::transport::Transport::ready).
    pub(crate) async fn ready(&self, within: Duration) -> Result<(), TransportError> {
        match &self.subscribers {
            Subscribers::Single(s) => s.ready(&self.shared, within).await,
            Subscribers::Cluster(c) => {
                self.shared.check_open()?;
                c.ready(within).await
            }
        }
    }

    /// Leaves every subscription, politely and within `brief`, before the transport closes.
    pub(crate) async fn close(&self, brief: Duration) {
        match &self.subscribers {
            Subscribers::Single(s) => {
                s.unsubscribe_all(brief).await;
                s.close();
            }
            Subscribers::Cluster(c) => c.close(brief).await,
        }
    }
}

impl PubSubAdmin for PubSub {
    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(async move {
            match &self.subscribers {
                Subscribers::Single(_) => admin::channels(&self.shared, pattern).await,
                Subscribers::Cluster(_) => cluster_admin::channels(&self.shared, pattern).await,
            }
        })
    }

    fn numsub<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, TransportError>> {
        Box::pin(async move {
            if channels.is_empty() {
                return Ok(Vec::new());
            }
            match &self.subscribers {
                Subscribers::Single(_) => admin::numsub(&self.shared, channels).await,
                Subscribers::Cluster(_) => cluster_admin::numsub(&self.shared, channels).await,
            }
        })
    }

    fn numpat(&self) -> BoxFuture<'_, Result<u64, TransportError>> {
        Box::pin(async move {
            match &self.subscribers {
                Subscribers::Single(_) => admin::numpat(&self.shared).await,
                Subscribers::Cluster(_) => cluster_admin::numpat(&self.shared).await,
            }
        })
    }
}
