//! Publish lanes to a cluster's primaries: the single server's publish lane (`conn/lane.rs`),
//! one per primary, for a cluster reached without TLS.
//!
//! A publish (`SPUBLISH`, `PUBLISH`), a durable append (`XADD`) and a `publish_all` chunk go
//! on the lane to the primary that serves their key's slot, as the `CLUSTER SLOTS` map last
//! read says; callers that arrive together thus go out in one write per node, as on a single
//! server. Whatever the lanes cannot carry goes through redis-rs's cluster connection, which
//! follows redirections and failovers itself:
//!
//! - commands whose keys lie in different slots, or whose slot has no lane (yet);
//! - a command a lane failed: a redirection (`MOVED`, `ASK`, a slot that moved), a lane that
//!   closed, or no reply in time. The lane is then forgotten, and the map read again (at most
//!   once per [`REFRESH_EVERY`]) by a task of its own. A command that got no reply in time is
//!   not sent again (the node may still run it): its caller gets the timeout, and the next
//!   command of that slot goes through the cluster connection until the map is read again.
//!
//! Measured with `bench --cluster-rows` (three interleaved rounds of F, `redis-benchmark -P 16
//! SPUBLISH` on the owning node, and ours; medians) on the 2-core VM, the code before and after
//! run one after the other: publish with 16 in flight 42% of F before, 63% after; end to end
//! (publisher process to a subscribing bus) 34% before, 49% after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionAddr, ConnectionInfo, RedisError};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::redis::cluster::slots::{SlotMap, slot_of};
use crate::redis::conn::lane::Lane;
use crate::redis::publish::encode::Command;
use crate::sync::lock;

/// The least time between two readings of the slot map.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The lanes to a cluster's primaries; clones share them. Dropping the last clone closes
/// every lane.
#[derive(Clone)]
pub(crate) struct NodeLanes {
    inner: Arc<Inner>,
}

struct Inner {
    /// A seed's settings (credentials): each lane's with the node's address.
    info: ConnectionInfo,
    tasks: TaskTracker,
    /// Bounds each wait for replies on a lane.
    timeout: Duration,
    state: Mutex<State>,
}

/// The map last read and the lanes opened to the primaries it names.
#[derive(Default)]
struct State {
    map: SlotMap,
    lanes: HashMap<String, Lane>,
    /// When the map was last asked for (`None`: never).
    asked: Option<Instant>,
}

impl NodeLanes {
    /// Lanes for the cluster whose seed `info` names; `None` when it is reached over TLS
    /// (the lane does not speak TLS).
    pub(crate) fn new(
        info: ConnectionInfo,
        tasks: &TaskTracker,
        timeout: Duration,
    ) -> Option<NodeLanes> {
        if !matches!(info.addr(), ConnectionAddr::Tcp(..)) {
            return None;
        }
        Some(NodeLanes {
            inner: Arc::new(Inner {
                info,
                tasks: tasks.clone(),
                timeout,
                state: Mutex::default(),
            }),
        })
    }

    /// The lane to the primary serving the slot of every one of `cmds`, when there is one;
    /// otherwise asks for the map to be read again through `conn` (see [`REFRESH_EVERY`]).
    pub(crate) fn lane_for(&self, cmds: &[Command<'_>], conn: &ClusterConnection) -> Option<Lane> {
        let slot = one_slot(cmds)?;
        let lane = {
            let state = lock(&self.inner.state);
            state
                .map
                .owner(slot)
                .and_then(|node| state.lanes.get(node).cloned())
        };
        if lane.is_none() {
            self.refresh_soon(conn);
        }
        lane
    }

    /// Forgets `lane` after it failed with `e`, when `e` says the lane or the map is no
    /// longer right (see the [module](self)); returns whether it did, the command then going
    /// through the cluster connection.
    pub(crate) fn failed(&self, lane: &Lane, e: &RedisError, conn: &ClusterConnection) -> bool {
        let stale = e.is_io_error()
            || e.is_timeout()
            || e.is_cluster_error()
            || matches!(e.code(), Some("MASTERDOWN" | "READONLY"));
        if stale {
            lock(&self.inner.state)
                .lanes
                .retain(|_, open| !open.same(lane));
            self.refresh_soon(conn);
        }
        stale
    }

    /// Reads the map again through `conn` in a task of its own, unless it was asked for
    /// less than [`REFRESH_EVERY`] ago.
    fn refresh_soon(&self, conn: &ClusterConnection) {
        {
            let mut state = lock(&self.inner.state);
            let now = Instant::now();
            if state.asked.is_some_and(|at| now < at + REFRESH_EVERY) {
                return;
            }
            state.asked = Some(now);
        }
        let lanes = self.clone();
        let mut conn = conn.clone();
        self.inner.tasks.spawn(async move {
            let _ = lanes.refresh(&mut conn).await;
        });
    }

    /// Reads the map (`CLUSTER SLOTS`) through `conn` and opens a lane to each primary that
    /// has none; lanes to nodes no longer primaries are closed.
    pub(crate) async fn refresh(&self, conn: &mut ClusterConnection) -> redis::RedisResult<()> {
        let timeout = self.inner.timeout;
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let asked = tokio::time::timeout(timeout, conn.route_command(cmd, any)).await;
        let reply = asked.map_err(|_| timed_out(timeout))??;
        let map = SlotMap::parse(&reply);
        let mut lanes = HashMap::new();
        for node in map.nodes() {
            let open = lock(&self.inner.state).lanes.get(node).cloned();
            let lane = match open {
                Some(lane) => Some(lane),
                None => self.open(node).await,
            };
            if let Some(lane) = lane {
                lanes.insert(node.to_owned(), lane);
            }
        }
        let mut state = lock(&self.inner.state);
        state.map = map;
        state.lanes = lanes;
        Ok(())
    }

    /// A lane to `node` (`host:port`), or `None` when it cannot be opened in time.
    async fn open(&self, node: &str) -> Option<Lane> {
        let (host, port) = node.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let addr = ConnectionAddr::Tcp(host.to_owned(), port);
        let info = self.inner.info.clone().set_addr(addr);
        let timeout = self.inner.timeout;
        let opening = Lane::open(&info, &self.inner.tasks, timeout);
        match tokio::time::timeout(timeout, opening).await {
            Ok(Ok(lane)) => lane,
            _ => None,
        }
    }
}

/// The slot of every one of `cmds`, when they share one.
fn one_slot(cmds: &[Command<'_>]) -> Option<u16> {
    let (first, rest) = cmds.split_first()?;
    let slot = slot_of(first.key());
    rest.iter()
        .all(|c| c.key() == first.key() || slot_of(c.key()) == slot)
        .then_some(slot)
}

fn timed_out(timeout: Duration) -> RedisError {
    let text = format!("no reply to CLUSTER SLOTS within {timeout:?}");
    std::io::Error::new(std::io::ErrorKind::TimedOut, text).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(channel: &str) -> Command<'_> {
        Command::Publish {
            sharded: true,
            channel,
            payload: b"x",
        }
    }

    #[test]
    fn commands_share_a_slot_or_none() {
        assert_eq!(one_slot(&[]), None);
        assert_eq!(
            one_slot(&[publish("events:a"), publish("events:a")]),
            Some(slot_of("events:a"))
        );
        assert_eq!(
            one_slot(&[publish("{t}:a"), publish("{t}:b")]),
            Some(slot_of("t"))
        );
        assert_ne!(slot_of("events:a"), slot_of("events:b"));
        assert_eq!(one_slot(&[publish("events:a"), publish("events:b")]), None);
    }

    #[test]
    fn no_lanes_over_tls() {
        let tasks = TaskTracker::new();
        let info = |url: &str| redis::IntoConnectionInfo::into_connection_info(url).unwrap();
        let plain = NodeLanes::new(info("redis://127.0.0.1:7000"), &tasks, REFRESH_EVERY);
        assert!(plain.is_some());
        #[cfg(feature = "tls")]
        assert!(NodeLanes::new(info("rediss://127.0.0.1:7000"), &tasks, REFRESH_EVERY).is_none());
    }
}
