//! A throwaway Redis Cluster for tests: three primaries with one replica each, on free
//! loopback ports (each with its bus port, port + 10000, free too), torn down on drop.
//!
//! ```no_run
//! use eventbus_suite::cluster::RedisCluster;
//!
//! let Some(mut cluster) = RedisCluster::start_or_skip() else {
//!     return; // redis-server is not installed (and CI is not set)
//! };
//! let url = cluster.url(); // redis+cluster://127.0.0.1:P1,127.0.0.1:P2/
//! let owner = cluster.owner_of("events:user_created");
//! cluster.kill_node(owner);
//! cluster.wait_promoted(owner, std::time::Duration::from_secs(20));
//! ```
//!
//! Nodes run with `--cluster-node-timeout 2000`, so a killed primary's replica takes over
//! within a few seconds. Every wait has a deadline and polls; none sleeps blindly.
//!
//! [`RedisCluster::start_tls_or_skip`] starts the same cluster TLS-only: every node has
//! `--port 0 --tls-port P --tls-cluster yes --tls-replication yes` and a certificate of one
//! shared authority ([`RedisCluster::tls_material`]), and [`RedisCluster::url`] is
//! `rediss+cluster://`.

use std::fmt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::redis_server::{RedisServer, installed, skip_missing_server, wait_until};
use crate::tls_material::TlsMaterial;

/// How long start-up may take before it is a failure.
const START_LIMIT: Duration = Duration::from_secs(40);

/// Six cluster nodes: three primaries, three replicas.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The authority every node's certificate comes from, for a TLS cluster.
    tls: Option<Arc<TlsMaterial>>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.ports())
            .finish()
    }
}

/// A primary in `CLUSTER NODES`: its port and the slot ranges it serves.
#[derive(Debug, Clone)]
struct Primary {
    port: u16,
    slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts the cluster; `None` (after a message) when redis-server is missing and `CI` is
    /// not set. In CI a missing binary is a failure.
    pub fn start_or_skip() -> Option<RedisCluster> {
        if !installed() {
            skip_missing_server(crate::in_ci());
            return None;
        }
        Some(Self::start())
    }

    /// Starts a TLS-only cluster; `None` (after a message) when redis-server is missing and
    /// `CI` is not set. In CI a missing binary is a failure.
    pub fn start_tls_or_skip() -> Option<RedisCluster> {
        if !installed() {
            skip_missing_server(crate::in_ci());
            return None;
        }
        Some(Self::start_with(Some(Arc::new(TlsMaterial::generate()))))
    }

    /// Starts six nodes, joins them with `redis-cli --cluster create ... --cluster-replicas 1`
    /// and waits until every node says `cluster_state:ok` and knows all three primaries.
    ///
    /// # Panics
    ///
    /// When a node does not start or the cluster is not ready within 40 s.
    #[track_caller]
    pub fn start() -> RedisCluster {
        Self::start_with(None)
    }

    /// Starts the cluster, TLS-only with certificates of `tls` when given.
    ///
    /// # Panics
    ///
    /// When a node does not start or the cluster is not ready within 40 s.
    #[track_caller]
    pub fn start_with(tls: Option<Arc<TlsMaterial>>) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6).map(|_| node(tls.as_ref()).start()).collect();
        let cluster = RedisCluster { nodes, tls };
        cluster.create();
        cluster.wait_ok(START_LIMIT);
        cluster.wait_replicas_synced(START_LIMIT);
        cluster
    }

    fn create(&self) {
        let mut cmd = Command::new("redis-cli");
        if let Some(tls) = &self.tls {
            cmd.args(tls.cli_args());
        }
        cmd.arg("--cluster").arg("create");
        for port in self.ports() {
            cmd.arg(format!("127.0.0.1:{port}"));
        }
        let out = cmd
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("could not run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until every running node says `cluster_state:ok`, and sees three primaries with
    /// all 16384 slots.
    ///
    /// # Panics
    ///
    /// When that does not happen within `within`.
    #[track_caller]
    pub fn wait_ok(&self, within: Duration) {
        wait_until(within, "every cluster node to say cluster_state:ok", || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let ok = n
                    .cli(&["CLUSTER", "INFO"])
                    .lines()
                    .any(|l| l.trim() == "cluster_state:ok");
                ok && primaries(&n.cli(&["CLUSTER", "NODES"]))
                    .iter()
                    .map(|p| {
                        p.slots
                            .iter()
                            .map(|(a, b)| u32::from(b - a) + 1)
                            .sum::<u32>()
                    })
                    .sum::<u32>()
                    == 16384
            })
        });
    }

    /// Waits until every replica's link to its primary is up: a replica that never synced
    /// refuses to take over (its data is too old).
    fn wait_replicas_synced(&self, within: Duration) {
        wait_until(within, "every cluster replica to sync", || {
            self.nodes.iter().all(|n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
    }

    /// Every node's port (running or not).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2/` (`rediss+cluster://` for a TLS cluster):
    /// two seed nodes, both primaries at start.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .primary_ports()
            .iter()
            .take(2)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}+cluster://{}/", seeds.join(","))
    }

    /// The authority behind every node's certificate, for a TLS cluster.
    ///
    /// # Panics
    ///
    /// When the cluster does not serve TLS.
    #[track_caller]
    pub fn tls_material(&self) -> &TlsMaterial {
        self.tls.as_deref().expect("the cluster does not serve TLS")
    }

    /// The ports of the current primaries, as a running node sees them.
    pub fn primary_ports(&self) -> Vec<u16> {
        self.primaries().iter().map(|p| p.port).collect()
    }

    fn primaries(&self) -> Vec<Primary> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("every cluster node was killed");
        primaries(&node.cli(&["CLUSTER", "NODES"]))
    }

    /// The port of the primary that serves `key` (or a channel name: sharded channels hash
    /// like keys).
    ///
    /// # Panics
    ///
    /// When no primary serves its slot.
    #[track_caller]
    pub fn owner_of(&self, key: &str) -> u16 {
        let node = self.nodes.iter().find(|n| n.is_running()).expect("a node");
        let slot: u16 = node
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        self.primaries()
            .iter()
            .find(|p| p.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|p| p.port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot} of {key}"))
    }

    /// The node on `port`.
    ///
    /// # Panics
    ///
    /// When no node of this cluster listens there.
    #[track_caller]
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The hash slot of `key` (or of a channel name).
    #[track_caller]
    pub fn slot_of(&self, key: &str) -> u16 {
        let node = self.nodes.iter().find(|n| n.is_running()).expect("a node");
        node.cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The cluster node id of the node on `port`.
    #[track_caller]
    pub fn node_id(&self, port: u16) -> String {
        self.node(port).cli(&["CLUSTER", "MYID"])
    }

    /// Moves the slot of `key` from its owner to the primary on `to`, as `redis-cli --cluster
    /// reshard` does: `SETSLOT IMPORTING` on the target, `MIGRATING` on the source, the keys
    /// moved with `MIGRATE`, then `SETSLOT NODE` on both and on every other primary. Returns
    /// when every running node sees `to` as the owner.
    ///
    /// # Panics
    ///
    /// When a step fails or the nodes do not agree within `within`.
    #[track_caller]
    pub fn move_slot_of(&self, key: &str, to: u16, within: Duration) {
        let slot = self.slot_of(key).to_string();
        let from = self.owner_of(key);
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let (source, target) = (self.node(from), self.node(to));
        target.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        source.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        self.migrate_keys(&slot, from, to);
        target.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        source.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        for port in self.primary_ports() {
            if port != from && port != to {
                self.node(port)
                    .cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
            }
        }
        wait_until(within, "every node to see the slot's new owner", || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let nodes = n.cli(&["CLUSTER", "NODES"]);
                let slot: u16 = slot.parse().expect("a slot number");
                primaries(&nodes)
                    .iter()
                    .any(|p| p.port == to && p.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            })
        });
    }

    /// Moves every key of `slot` from the node on `from` to the node on `to`.
    #[track_caller]
    fn migrate_keys(&self, slot: &str, from: u16, to: u16) {
        let source = self.node(from);
        loop {
            let keys = source.cli(&["CLUSTER", "GETKEYSINSLOT", slot, "100"]);
            let keys: Vec<&str> = keys
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                return;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            source.cli(&args);
        }
    }

    /// Kills the node on `port` at once (SIGKILL).
    #[track_caller]
    pub fn kill_node(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .kill();
    }

    /// Waits until the slots the killed primary on `port` served have a new primary and the
    /// cluster is `ok` again on every running node.
    ///
    /// # Panics
    ///
    /// When that does not happen within `within`.
    #[track_caller]
    pub fn wait_promoted(&self, port: u16, within: Duration) {
        wait_until(within, "a replica to take over the killed primary", || {
            let ps = self.primaries();
            ps.len() == 3 && ps.iter().all(|p| p.port != port)
        });
        self.wait_ok(within);
    }
}

/// The options of one cluster node; TLS-only, for the cluster bus and replication too, with
/// `tls`.
fn node(tls: Option<&Arc<TlsMaterial>>) -> crate::redis_server::RedisServerBuilder {
    let builder = RedisServer::builder().cluster_bus_port(true).args(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
    ]);
    match tls {
        Some(tls) => {
            builder
                .tls_shared(tls)
                .args(&["--tls-cluster", "yes", "--tls-replication", "yes"])
        }
        None => builder,
    }
}

/// The connected primaries of a `CLUSTER NODES` reply, with their slot ranges.
fn primaries(nodes: &str) -> Vec<Primary> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let port = addr.rsplit(':').next()?.parse().ok()?;
            let slots = fields
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect::<Vec<_>>();
            (!slots.is_empty()).then_some(Primary { port, slots })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::primaries;

    #[test]
    fn cluster_nodes_lines_are_read() {
        let text = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [5461->-x]\n\
                    c 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383\n\
                    d 127.0.0.1:7003@17003 slave a 0 0 1 connected\n";
        let ps = primaries(text);
        assert_eq!(ps.len(), 2);
        assert_eq!((ps[0].port, ps[0].slots.clone()), (7000, vec![(0, 5460)]));
        assert_eq!(ps[1].port, 7001);
    }
}
