//! A throwaway Sentinel deployment for tests: a primary, one replica and three sentinels, all
//! on free loopback ports, torn down on drop.
//!
//! ```no_run
//! use eventbus_suite::sentinel::SentinelSet;
//!
//! let Some(mut set) = SentinelSet::start_or_skip() else {
//!     return; // redis-server is not installed (and CI is not set)
//! };
//! let url = set.url(); // redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/eventbus
//! let old = set.master_addr();
//! set.kill_master();
//! let new = set.wait_failover(&old, std::time::Duration::from_secs(20));
//! assert_ne!(old, new);
//! ```
//!
//! The sentinels watch the primary with a quorum of 2, `down-after-milliseconds 1000` and
//! `failover-timeout 3000`, so a killed primary is replaced by its replica within a few
//! seconds. Every wait has a deadline and polls; none sleeps blindly.

use std::fmt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{
    RedisServer, TempDir, free_port, installed, skip_missing_server, wait_until,
};

/// The master name the sentinels monitor.
pub const MASTER_NAME: &str = "eventbus";

/// How long start-up may take before it is a failure.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A primary, one replica and three sentinels.
pub struct SentinelSet {
    /// The data nodes: the primary first, then the replica (the roles change on failover).
    nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

impl fmt::Debug for SentinelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelSet")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| n.port()).collect::<Vec<_>>(),
            )
            .field(
                "sentinels",
                &self.sentinels.iter().map(|s| s.port).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SentinelSet {
    /// Starts the deployment; `None` (after a message) when redis-server is missing and `CI`
    /// is not set. In CI a missing binary is a failure.
    pub fn start_or_skip() -> Option<SentinelSet> {
        if !installed() {
            skip_missing_server(crate::in_ci());
            return None;
        }
        Some(Self::start())
    }

    /// Starts the deployment and waits until every sentinel knows the primary, its replica
    /// and the two other sentinels, so a failover can be agreed on.
    ///
    /// # Panics
    ///
    /// When a process does not start or the set is not ready within 30 s.
    #[track_caller]
    pub fn start() -> SentinelSet {
        let primary = RedisServer::start();
        let port = primary.port().to_string();
        let replica = RedisServer::builder()
            .args(&["--replicaof", "127.0.0.1", &port])
            .start();
        wait_until(START_LIMIT, "the replica to sync with the primary", || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels = (0..3).map(|_| Sentinel::start(primary.port())).collect();
        let set = SentinelSet {
            nodes: vec![primary, replica],
            sentinels,
        };
        set.wait_ready();
        set
    }

    fn wait_ready(&self) {
        for s in &self.sentinels {
            wait_until(START_LIMIT, "each sentinel to know the whole set", || {
                let replicas = s.try_cli(&["SENTINEL", "REPLICAS", MASTER_NAME]);
                let others = s.try_cli(&["SENTINEL", "SENTINELS", MASTER_NAME]);
                match (replicas, others) {
                    (Ok(r), Ok(o)) => {
                        r.lines().filter(|l| *l == "name").count() == 1
                            && o.lines().filter(|l| *l == "name").count() == 2
                    }
                    _ => false,
                }
            });
        }
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/eventbus`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The primary's `host:port`, as the first sentinel that answers says
    /// (`SENTINEL get-master-addr-by-name`).
    ///
    /// # Panics
    ///
    /// When no sentinel answers.
    #[track_caller]
    pub fn master_addr(&self) -> String {
        let mut last = String::new();
        for s in &self.sentinels {
            match s.try_cli(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]) {
                Ok(out) => {
                    let parts: Vec<&str> = out.lines().map(str::trim).collect();
                    if let [host, port] = parts[..] {
                        return format!("{host}:{port}");
                    }
                    last = out;
                }
                Err(e) => last = e,
            }
        }
        panic!("no sentinel named the primary: {last}");
    }

    /// The data nodes: the primary and the replica (in start order; roles change on failover).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The data node serving at `addr` (`host:port`), if it is one of ours.
    pub fn node(&self, addr: &str) -> Option<&RedisServer> {
        self.nodes
            .iter()
            .find(|n| addr.ends_with(&format!(":{}", n.port())))
    }

    /// Kills the current primary at once (SIGKILL); returns its address.
    ///
    /// # Panics
    ///
    /// When the primary the sentinels name is not one of ours.
    #[track_caller]
    pub fn kill_master(&mut self) -> String {
        let addr = self.master_addr();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| addr.ends_with(&format!(":{}", n.port())))
            .unwrap_or_else(|| panic!("the primary {addr} is not one of ours"));
        node.kill();
        addr
    }

    /// Waits until the sentinels name a primary other than `old` and it answers as a primary;
    /// returns its address.
    ///
    /// # Panics
    ///
    /// When that does not happen within `within`.
    #[track_caller]
    pub fn wait_failover(&self, old: &str, within: Duration) -> String {
        let mut new = String::new();
        wait_until(within, "the sentinels to promote the replica", || {
            new = self.master_addr();
            new != old
                && self.node(&new).is_some_and(|n| {
                    n.is_running() && n.cli(&["ROLE"]).lines().next() == Some("master")
                })
        });
        new
    }
}

/// One `redis-server --sentinel` process.
struct Sentinel {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Sentinel {
    #[track_caller]
    fn start(primary: u16) -> Sentinel {
        let mut last = String::new();
        for _ in 0..20 {
            let mut s = Sentinel {
                port: free_port(),
                child: None,
                dir: TempDir::new(),
            };
            match s.spawn(primary) {
                Ok(()) => return s,
                Err(why) => last = why,
            }
        }
        panic!("redis sentinel did not start: {last}");
    }

    fn spawn(&mut self, primary: u16) -> Result<(), String> {
        let dir = self.dir.path();
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\ndir {dir}\n\
             logfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 3000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = self.port,
            dir = dir.display(),
            log = dir.join("sentinel.log").display(),
        );
        std::fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not run redis-server --sentinel: {e}"))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "sentinel on port {} exited with {status}",
                    self.port
                ));
            }
            if self.try_cli(&["PING"]).is_ok_and(|o| o == "PONG") {
                let pid = self.child.as_ref().map_or(0, Child::id);
                let info = self.try_cli(&["INFO", "server"]).unwrap_or_default();
                if info
                    .lines()
                    .any(|l| l.trim() == format!("process_id:{pid}"))
                {
                    return Ok(());
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                self.stop();
                return Err(format!("sentinel on port {} did not answer", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        crate::redis_server::cli_on(self.port, args)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
    }
}
