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
//! command makes the connection re-read the slot map), then reports a `Moved` for each channel
//! now served by another node and `Resubscribed`. The classic and pattern subscriptions of
//! every topic whose slot moved are first taken off the node that served it: classic messages
//! reach every node, so leaving them there would deliver them twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::PushInfo;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use crate::Topic;
use crate::redis::cluster::pushes::{self, Lost};
use crate::redis::cluster::slots::{Owners, slot_of};
use crate::redis::errors;
use crate::redis::pubsub::names::Names;
use crate::redis::shared::Shared;
use crate::sync::lock;
use crate::transport::{ConnectionEvent, ErrorKind, TransportError};

const ROLE: &str = "subscriber";

/// The subscriber of a cluster transport.
#[derive(Default)]
pub(crate) struct ClusterSubscriber {
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
    held: Mutex<BTreeSet<Topic>>,
    /// A healing task runs.
    healing: AtomicBool,
    /// The slot of each held channel and pattern and the node that served it when last
    /// confirmed.
    served: Mutex<BTreeMap<Topic, (u16, String)>>,
}

impl ClusterSubscriber {
    /// The number of channels and patterns held.
    pub(crate) fn held(&self) -> usize {
        lock(&self.held).len()
    }

    /// The connection, made on first use with its push reader.
    async fn connection(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
    ) -> Result<ClusterConnection, TransportError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let nodes = shared.target.cluster().ok_or_else(not_cluster)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = nodes.subscriber(tx).map_err(|e| {
            errors::connect_error(&shared.target.addr, e, shared.options.connect_timeout)
        })?;
        let timeout = shared.options.connect_timeout;
        let conn = match tokio::time::timeout(timeout, client.get_async_connection()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(errors::connect_error(&shared.target.addr, e, timeout)),
            Err(_) => {
                let e = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
                return Err(errors::connect_error(&shared.target.addr, e, timeout));
            }
        };
        shared.spawn(self.clone().pump(shared.clone(), rx));
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
        self: &Arc<Self>,
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
                return Err(errors::command_error(&shared.target.addr, "subscribing", e));
            }
        }
        self.note_servers(&mut conn, shared.options.response_timeout)
            .await;
        Ok(())
    }

    /// Records the node now serving each held channel and pattern, as that node says;
    /// returns the channels whose node changed. A topic whose node cannot be asked keeps its
    /// record.
    async fn note_servers(
        &self,
        conn: &mut ClusterConnection,
        timeout: Duration,
    ) -> Vec<ConnectionEvent> {
        let topics: Vec<Topic> = lock(&self.held).iter().cloned().collect();
        lock(&self.served).retain(|t, _| topics.contains(t));
        let mut answers = Owners::default();
        let mut moves = Vec::new();
        for topic in topics {
            let name = topic_name(&topic).to_owned();
            let slot = slot_of(&name);
            let Some(node) = answers.owner(conn, &name, slot, timeout).await else {
                continue;
            };
            let before = lock(&self.served).insert(topic.clone(), (slot, node.clone()));
            match (topic, before) {
                (Topic::Channel(channel), Some((_, from))) if from != node => {
                    moves.push(ConnectionEvent::Moved {
                        channel,
                        slot,
                        from,
                        to: node,
                    });
                }
                _ => {}
            }
        }
        moves
    }

    /// The held topics whose node changed since they were last confirmed, with the node that
    /// served them: their classic and pattern subscriptions are still there.
    async fn left_behind(
        &self,
        conn: &mut ClusterConnection,
        timeout: Duration,
    ) -> Vec<(Topic, String)> {
        let served: Vec<(Topic, (u16, String))> = lock(&self.served)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        let mut answers = Owners::default();
        let mut behind = Vec::new();
        for (topic, (slot, node)) in served {
            let now = answers.owner(conn, topic_name(&topic), slot, timeout).await;
            if now.is_some_and(|now| now != node) {
                behind.push((topic, node));
            }
        }
        behind
    }

    /// The node that served `channel` when last confirmed, `host:port`.
    fn server_of(&self, channel: &str) -> Option<String> {
        lock(&self.served)
            .get(&Topic::Channel(channel.to_owned()))
            .map(|(_, node)| node.clone())
    }

    /// Whether `channel` is held.
    fn holds_channel(&self, channel: &str) -> bool {
        lock(&self.held).contains(&Topic::Channel(channel.to_owned()))
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
                .map_err(|e| errors::command_error(&shared.target.addr, "unsubscribing", e))?;
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

    /// Hands the pushes of the subscriber connection to the bus until the transport closes,
    /// and heals what a push says was lost.
    async fn pump(
        self: Arc<Self>,
        shared: Arc<Shared>,
        mut pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
    ) {
        let mut names = Names::default();
        while let Some(push) = pushes.recv().await {
            let cause = match pushes::handle(&*shared.inbound, push, &mut names) {
                None => continue,
                Some(Lost::Node) => "the connection to a cluster node was lost".to_owned(),
                Some(Lost::Sharded(channel)) if self.holds_channel(&channel) => {
                    let node = self.server_of(&channel);
                    let node = node.as_deref().unwrap_or("the node serving it");
                    format!(
                        "cluster node {node} dropped the sharded subscription to {channel} \
                         (its slot {} moved)",
                        slot_of(&channel)
                    )
                }
                Some(Lost::Sharded(_)) => continue,
            };
            let lost = ConnectionEvent::Disconnected { role: ROLE, cause };
            shared.inbound.connection(lost);
            self.heal(&shared);
        }
    }

    /// Subscribes again to everything held until every node confirms, then reports
    /// `Resubscribed`. One healing task at a time.
    fn heal(self: &Arc<Self>, shared: &Arc<Shared>) {
        if self.healing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (shared, sub) = (shared.clone(), self.clone());
        shared.clone().spawn(async move {
            let mut attempt = 0u32;
            loop {
                attempt = attempt.saturating_add(1);
                let delay = shared.options.backoff_delay(attempt);
                tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                match sub.resubscribe(&shared).await {
                    Ok((topics, moves)) => {
                        sub.healing.store(false, Ordering::Release);
                        let inbound = &shared.inbound;
                        inbound.connection(ConnectionEvent::Reconnected {
                            role: ROLE,
                            attempts: attempt,
                        });
                        for moved in moves {
                            inbound.connection(moved);
                        }
                        inbound.connection(ConnectionEvent::Resubscribed { topics });
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, attempt, "cluster resubscribe failed"),
                }
            }
        });
    }

    /// Subscribes again to everything held, after taking the classic and pattern
    /// subscriptions of topics whose slot moved off their old node; returns how many topics it
    /// holds and the channels that moved.
    async fn resubscribe(
        &self,
        shared: &Shared,
    ) -> Result<(usize, Vec<ConnectionEvent>), redis::RedisError> {
        let Some(mut conn) = self.conn.lock().await.clone() else {
            return Ok((0, Vec::new()));
        };
        let timeout = shared.options.response_timeout;
        let mut unreachable = BTreeSet::new();
        for (topic, node) in self.left_behind(&mut conn, timeout).await {
            if !unreachable.contains(&node)
                && !unsubscribe_at(&mut conn, &topic, &node, timeout).await
            {
                unreachable.insert(node);
            }
        }
        let topics: Vec<Topic> = lock(&self.held).iter().cloned().collect();
        for t in &topics {
            send(&mut conn, t, true, timeout).await?;
        }
        let moves = self.note_servers(&mut conn, timeout).await;
        Ok((topics.len(), moves))
    }
}

/// `UNSUBSCRIBE channel` or `PUNSUBSCRIBE pattern` on the node at `node` (`host:port`), by
/// its address; returns whether the node answered. A node that is gone has no subscription
/// left, so failures are only logged.
async fn unsubscribe_at(
    conn: &mut ClusterConnection,
    topic: &Topic,
    node: &str,
    timeout: Duration,
) -> bool {
    let Some((host, port)) = node.rsplit_once(':') else {
        return false;
    };
    let Ok(port) = port.parse::<u16>() else {
        return false;
    };
    let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port,
    });
    let mut cmd = match topic {
        Topic::Channel(_) => redis::cmd("UNSUBSCRIBE"),
        Topic::Pattern(_) => redis::cmd("PUNSUBSCRIBE"),
    };
    cmd.arg(topic_name(topic));
    match tokio::time::timeout(timeout, conn.route_command(cmd, at)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, ?topic, node, "unsubscribing the old node failed");
            false
        }
        Err(_) => {
            tracing::debug!(?topic, node, "unsubscribing the old node timed out");
            false
        }
    }
}

/// The channel or pattern itself.
fn topic_name(topic: &Topic) -> &str {
    match topic {
        Topic::Channel(c) => c,
        Topic::Pattern(p) => p,
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
