//! Pub/sub queries on a Redis Cluster: asked of every node and combined. Sharded channels
//! (`PUBSUB SHARDCHANNELS`, `SHARDNUMSUB`), since those are what the bus uses on a cluster;
//! pattern subscriptions (`PUBSUB NUMPAT`) summed over the nodes.

use std::collections::{BTreeMap, BTreeSet};

use redis::Value;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use tokio::time::Instant;

use crate::redis::conn::connection::Conn;
use crate::redis::pubsub::admin::parse_numsub;
use crate::redis::shared::Shared;
use crate::redis::streams::reply::text;
use crate::transport::{ErrorKind, TransportError};

/// Runs `cmd` on every node of the cluster; returns each node's reply.
async fn on_every_node(
    shared: &Shared,
    what: &str,
    cmd: &redis::Cmd,
) -> Result<Vec<Value>, TransportError> {
    let wait = shared.options.publish_deadline;
    let reply = shared
        .retry(what, Instant::now() + wait, wait, |conn| async move {
            let Conn::Cluster {
                commands: mut conn, ..
            } = conn
            else {
                return Err((redis::ErrorKind::Client, "not a cluster connection").into());
            };
            let every = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
            conn.route_command(cmd.clone(), every).await
        })
        .await?;
    match reply {
        Value::Map(pairs) => Ok(pairs.into_iter().map(|(_, v)| v).collect()),
        other => Ok(vec![other]),
    }
}

fn bad(what: &str) -> TransportError {
    TransportError::new(
        ErrorKind::Server,
        format!("unexpected reply to {what} from a Redis Cluster node"),
    )
}

fn array(v: Value, what: &str) -> Result<Vec<Value>, TransportError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        _ => Err(bad(what)),
    }
}

/// `PUBSUB SHARDCHANNELS [pattern]` on every node: the union, sorted.
pub(crate) async fn channels(
    shared: &Shared,
    pattern: Option<&str>,
) -> Result<Vec<String>, TransportError> {
    const WHAT: &str = "PUBSUB SHARDCHANNELS";
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("SHARDCHANNELS");
    if let Some(p) = pattern {
        cmd.arg(p);
    }
    let mut all = BTreeSet::new();
    for reply in on_every_node(shared, WHAT, &cmd).await? {
        for c in array(reply, WHAT)? {
            all.insert(text(&c).ok_or_else(|| bad(WHAT))?);
        }
    }
    Ok(all.into_iter().collect())
}

/// `PUBSUB SHARDNUMSUB channel...` on every node: the counts summed per channel, in the
/// order asked.
pub(crate) async fn numsub(
    shared: &Shared,
    channels: &[String],
) -> Result<Vec<(String, u64)>, TransportError> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("SHARDNUMSUB").arg(channels);
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for reply in on_every_node(shared, "PUBSUB SHARDNUMSUB", &cmd).await? {
        for (c, n) in parse_numsub(array(reply, "PUBSUB SHARDNUMSUB")?)? {
            *sums.entry(c).or_default() += n;
        }
    }
    Ok(channels
        .iter()
        .map(|c| (c.clone(), sums.get(c).copied().unwrap_or(0)))
        .collect())
}

/// `PUBSUB NUMPAT` on every node, summed.
pub(crate) async fn numpat(shared: &Shared) -> Result<u64, TransportError> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMPAT");
    let mut sum = 0u64;
    for reply in on_every_node(shared, "PUBSUB NUMPAT", &cmd).await? {
        match reply {
            Value::Int(n) => sum += u64::try_from(n).unwrap_or(0),
            _ => return Err(bad("PUBSUB NUMPAT")),
        }
    }
    Ok(sum)
}
