//! One `redis-server --sentinel` process of a [`SentinelSet`](crate::sentinel::SentinelSet):
//! its sentinel.conf, start-up and `redis-cli` access.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_server::{TempDir, cli_on_with, free_port, served_by};
use crate::sentinel::MASTER_NAME;
use crate::tls_material::TlsMaterial;

/// How a sentinel is set up: shared by the sentinels of one set.
#[derive(Debug, Clone, Default)]
pub(crate) struct SentinelConfig {
    /// TLS-only (`port 0`, `tls-port`, `tls-replication yes`), with these certificates.
    pub(crate) tls: Option<Arc<TlsMaterial>>,
    /// The data nodes' password (`sentinel auth-pass`).
    pub(crate) data_password: Option<String>,
    /// The sentinels' own password (`requirepass`).
    pub(crate) password: Option<String>,
}

impl SentinelConfig {
    /// The sentinel.conf of a sentinel on `port` in `dir` that monitors the primary on
    /// `primary`.
    fn text(&self, port: u16, dir: &std::path::Path, primary: u16) -> String {
        let mut text = match &self.tls {
            Some(tls) => format!("{}tls-replication yes\n", tls.conf_lines(port)),
            None => format!("port {port}\n"),
        };
        text.push_str(&format!(
            "bind 127.0.0.1\ndaemonize no\nprotected-mode no\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 3000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.display(),
            log = dir.join("sentinel.log").display(),
        ));
        if let Some(pw) = &self.data_password {
            text.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
        }
        if let Some(pw) = &self.password {
            text.push_str(&format!("requirepass {pw}\n"));
        }
        text
    }
}

/// One running sentinel, killed on drop.
pub(crate) struct Sentinel {
    pub(crate) port: u16,
    child: Option<Child>,
    dir: TempDir,
    config: SentinelConfig,
}

impl Sentinel {
    /// Starts a sentinel on a free port that monitors the primary on `primary`.
    #[track_caller]
    pub(crate) fn start(primary: u16, config: &SentinelConfig) -> Sentinel {
        let mut last = String::new();
        for _ in 0..20 {
            let mut s = Sentinel {
                port: free_port(),
                child: None,
                dir: TempDir::new(),
                config: config.clone(),
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
        let text = self.config.text(self.port, dir, primary);
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
        self.wait_ready()
    }

    /// Waits until the sentinel answers `PING` as our process (at most 10 s).
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "sentinel on port {} exited with {status}",
                    self.port
                ));
            }
            if self.try_cli(&["PING"]).is_ok_and(|o| o == "PONG") && self.is_ours() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(10) {
                self.stop();
                return Err(format!("sentinel on port {} did not answer", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process answering on the port is ours (not another test's that took the
    /// port first).
    fn is_ours(&self) -> bool {
        let pid = self.child.as_ref().map_or(0, Child::id);
        served_by(&self.try_cli(&["INFO", "server"]).unwrap_or_default(), pid)
    }

    /// Runs `redis-cli ARGS...` against the sentinel, with its password and TLS material.
    pub(crate) fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let c = &self.config;
        cli_on_with(self.port, c.password.as_deref(), c.tls.as_deref(), args)
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
