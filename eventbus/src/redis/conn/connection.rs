//! The command connection: one multiplexed connection to a server (with a publish lane
//! beside it where the server is reached without TLS), or a cluster connection that routes
//! each command to the node serving its key.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::redis::cluster::lanes::NodeLanes;
use crate::redis::conn::lane::Lane;
use crate::redis::publish::encode::Command;

/// A connection commands run on, whatever the deployment.
#[derive(Clone)]
pub(crate) enum Conn {
    /// A single server (also the primary found through Sentinel): `commands` carries every
    /// command, except the publish path's (`PUBLISH`, `XADD`, `publish_all`) where there is a
    /// `lane` for them.
    Single {
        commands: MultiplexedConnection,
        lane: Option<Lane>,
    },
    /// A Redis Cluster: commands go to the node that serves their key's slot, and follow
    /// `MOVED`/`ASK` redirections and failovers; the publish path's go on `lanes`, where
    /// there are some, when they can.
    Cluster {
        commands: ClusterConnection,
        lanes: Option<NodeLanes>,
    },
}

impl Conn {
    /// The publish lane of a single server, where there is one.
    pub(crate) fn lane(&self) -> Option<&Lane> {
        match self {
            Conn::Single { lane, .. } => lane.as_ref(),
            Conn::Cluster { .. } => None,
        }
    }

    /// The lane that can carry `cmds`: a single server's publish lane, or the lane to the
    /// cluster node serving their slot (see `cluster/lanes.rs`).
    pub(crate) fn lane_for(&self, cmds: &[Command<'_>]) -> Option<Lane> {
        match self {
            Conn::Single { lane, .. } => lane.clone(),
            Conn::Cluster {
                commands,
                lanes: Some(lanes),
            } => lanes.lane_for(cmds, commands),
            Conn::Cluster { lanes: None, .. } => None,
        }
    }

    /// Whether a command `lane` failed with `e` should go through the cluster connection
    /// instead (the lane is then forgotten): never on a single server, where the error is the
    /// connection's.
    pub(crate) fn lane_failed(&self, lane: &Lane, e: &redis::RedisError) -> bool {
        match self {
            Conn::Cluster {
                commands,
                lanes: Some(lanes),
            } => lanes.failed(lane, e, commands),
            _ => false,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single { commands: c, .. } => c.req_packed_command(cmd),
            Conn::Cluster { commands: c, .. } => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single { commands: c, .. } => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster { commands: c, .. } => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single { commands: c, .. } => c.get_db(),
            Conn::Cluster { commands: c, .. } => c.get_db(),
        }
    }
}
