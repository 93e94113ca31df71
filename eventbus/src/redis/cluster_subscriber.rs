//! The subscriber on a Redis Cluster: one RESP3 cluster connection whose pushes carry the
//! messages. Each channel is subscribed twice, one command per channel (so never channels of
//! different slots in one command), on the node that serves the channel's slot: with
//! `SSUBSCRIBE` for sharded publishes (`SPUBLISH`: typed events with a fixed channel) and
//! with classic `SUBSCRIBE` for classic ones (`PUBLISH`: keyed events, raw payloads, peers
//! that publish plainly). A message is published one way, so it arrives once. Patterns use
//! classic `PSUBSCRIBE`.
//!
//! Classic traffic costs more on a cluster: every node forwards a classic `PUBLISH` to every
//! other. Sharded messages never reach a pattern.
//!
//! When a node's connection is lost or the server drops a sharded subscription by itself (its
//! slot moved to another node), a healing task subscribes again to everything held, with
//! backoff, until every command is confirmed by the node now serving the slot (a failed
//! command makes the connection re-read the slot map), then reports `Resubscribed`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};

use super::Shared;
use crate::Topic;
use crate::sync::lock;
use crate::transport::{ConnectionEvent, ErrorKind, Message, TransportError};

const ROLE: &str = "subscriber";

/// The subscriber of a cluster transport.
#[derive(Default)]
pub(crate) struct ClusterSubscriber {
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
    held: Mutex<BTreeSet<Topic>>,
    /// A healing task runs.
    healing: AtomicBool,
}

impl ClusterSubscriber {
    /// The number of channels and patterns held.
    pub(crate) fn held(&self) -> usize {
        lock(&self.held).len()
    }

    /// The connection, made on first use with its push reader.
    async fn connection(&self, shared: &Arc<Shared>) -> Result<ClusterConnection, TransportError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let nodes = shared.target.cluster().ok_or_else(not_cluster)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = nodes.subscriber(tx).map_err(|e| {
            shared
                .target
                .connect_error(e, shared.options.connect_timeout)
        })?;
        let timeout = shared.options.connect_timeout;
        let conn = match tokio::time::timeout(timeout, client.get_async_connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(shared.target.connect_error(e, timeout)),
            Err(_) => {
                let e = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
                return Err(shared.target.connect_error(e, timeout));
            }
        };
        let task = tokio::spawn(pump(shared.clone(), rx));
        shared.track(task.abort_handle());
        shared
            .inbound
            .connection(ConnectionEvent::Connected { role: ROLE });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Waits until no resubscription is under way (every held topic confirmed by the node now
    /// serving it); see [`Transport::ready`](crate::transport::Transport::ready).
    pub(crate) async fn ready(&self, within: Duration) -> Result<(), TransportError> {
        let deadline = tokio::time::Instant::now() + within;
        while self.healing.load(Ordering::Acquire) {
            if tokio::time::Instant::now() >= deadline {
                return Err(TransportError::new(
                    ErrorKind::Disconnected,
                    format!(
                        "not ready: the cluster subscriber was still subscribing again after \
                         {within:?}"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Subscribes: `SSUBSCRIBE` and `SUBSCRIBE` per channel, `PSUBSCRIBE` per pattern.
    pub(crate) async fn subscribe(
        &self,
        shared: &Arc<Shared>,
        topics: &[Topic],
    ) -> Result<(), TransportError> {
        shared.check_open()?;
        if topics.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection(shared).await?;
        lock(&self.held).extend(topics.iter().cloned());
        for topic in topics {
            if let Err(e) = send(&mut conn, topic, true, shared.options.response_timeout).await {
                lock(&self.held).remove(topic);
                return Err(shared.target.command_error("subscribing", e));
            }
        }
        Ok(())
    }

    /// Unsubscribes; forgets the topics even when a node does not answer.
    pub(crate) async fn unsubscribe(
        &self,
        shared: &Arc<Shared>,
        topics: &[Topic],
    ) -> Result<(), TransportError> {
        {
            let mut held = lock(&self.held);
            for t in topics {
                held.remove(t);
            }
        }
        let Some(mut conn) = self.conn.lock().await.clone() else {
            return Ok(());
        };
        for topic in topics {
            send(&mut conn, topic, false, shared.options.response_timeout)
                .await
                .map_err(|e| shared.target.command_error("unsubscribing", e))?;
        }
        Ok(())
    }

    /// Unsubscribes from everything briefly and drops the connection.
    pub(crate) async fn close(&self, timeout: Duration) {
        let Some(mut conn) = self.conn.lock().await.take() else {
            return;
        };
        let topics: Vec<Topic> = lock(&self.held).iter().cloned().collect();
        let _ = tokio::time::timeout(timeout, async {
            for t in &topics {
                let _ = send(&mut conn, t, false, timeout).await;
            }
        })
        .await;
    }

    /// Subscribes again to everything held until every node confirms, then reports
    /// `Resubscribed`. One healing task at a time.
    fn heal(shared: &Arc<Shared>) {
        let sub = &shared.cluster_subscriber;
        if sub.healing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared2 = shared.clone();
        let task = tokio::spawn(async move {
            let shared = shared2;
            let sub = &shared.cluster_subscriber;
            let mut attempt = 0u32;
            loop {
                attempt = attempt.saturating_add(1);
                let delay = shared.options.backoff_delay(attempt);
                tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                match sub.resubscribe(&shared).await {
                    Ok(topics) => {
                        sub.healing.store(false, Ordering::Release);
                        let inbound = &shared.inbound;
                        inbound.connection(ConnectionEvent::Reconnected {
                            role: ROLE,
                            attempts: attempt,
                        });
                        inbound.connection(ConnectionEvent::Resubscribed { topics });
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, attempt, "cluster resubscribe failed"),
                }
            }
        });
        shared.track(task.abort_handle());
    }

    async fn resubscribe(&self, shared: &Shared) -> Result<usize, redis::RedisError> {
        let Some(mut conn) = self.conn.lock().await.clone() else {
            return Ok(0);
        };
        let topics: Vec<Topic> = lock(&self.held).iter().cloned().collect();
        for t in &topics {
            send(&mut conn, t, true, shared.options.response_timeout).await?;
        }
        Ok(topics.len())
    }
}

fn not_cluster() -> TransportError {
    TransportError::new(ErrorKind::Config, "not a Redis Cluster transport")
}

/// Sends the (un)subscribe commands for one topic (both kinds for a channel), bounded by
/// `timeout`.
async fn send(
    conn: &mut ClusterConnection,
    topic: &Topic,
    on: bool,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let sent = async {
        match (topic, on) {
            (Topic::Channel(c), true) => {
                conn.ssubscribe(c).await?;
                conn.subscribe(c).await
            }
            (Topic::Channel(c), false) => {
                conn.sunsubscribe(c).await?;
                conn.unsubscribe(c).await
            }
            (Topic::Pattern(p), true) => conn.psubscribe(p).await,
            (Topic::Pattern(p), false) => conn.punsubscribe(p).await,
        }
    };
    match tokio::time::timeout(timeout, sent).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// Hands the pushes of the subscriber connection to the bus until the transport closes.
async fn pump(shared: Arc<Shared>, mut pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>) {
    loop {
        let push = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            p = pushes.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        handle(&shared, push);
    }
}

fn handle(shared: &Arc<Shared>, push: PushInfo) {
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(Bytes::copy_from_slice(b)),
        Some(Value::SimpleString(s)) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    };
    let name = |b: Bytes| -> Arc<str> { Arc::from(String::from_utf8_lossy(&b)) };
    let d = &push.data;
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            if let (Some(c), Some(p)) = (text(d.first()), text(d.get(1))) {
                shared.inbound.message(Message::new(name(c), None, p));
            }
        }
        PushKind::PMessage => {
            if let (Some(pat), Some(c), Some(p)) = (text(d.first()), text(d.get(1)), text(d.get(2)))
            {
                shared
                    .inbound
                    .message(Message::new(name(c), Some(name(pat)), p));
            }
        }
        PushKind::Disconnection => {
            shared.inbound.connection(ConnectionEvent::Disconnected {
                role: ROLE,
                cause: "the connection to a cluster node was lost".to_owned(),
            });
            ClusterSubscriber::heal(shared);
        }
        PushKind::SUnsubscribe => {
            // Unsolicited when the channel is still held: its slot moved to another node.
            let Some(c) = text(d.first()) else { return };
            let topic = Topic::Channel(String::from_utf8_lossy(&c).into_owned());
            if lock(&shared.cluster_subscriber.held).contains(&topic) {
                shared.inbound.connection(ConnectionEvent::Disconnected {
                    role: ROLE,
                    cause: format!("the server dropped the sharded subscription to {topic:?}"),
                });
                ClusterSubscriber::heal(shared);
            }
        }
        _ => {}
    }
}
