//! Resource samples: each live service process's RSS (`/proc/PID/status`) and open file
//! descriptors (`/proc/PID/fd`), and the server's client connections (`CLIENT LIST`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus_suite::redis_server::RedisServer;

use crate::accounting::{Ledger, Sample};
use crate::faults::on_server;
use crate::workload::now_ms;

/// How often the sampler looks.
pub(crate) const EVERY: Duration = Duration::from_secs(2);

/// Resident set size in KiB and open descriptors of a process; `None` once it is gone.
fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// Samples every live service process into the ledger.
pub(crate) fn sample_processes(ledger: &Mutex<Ledger>) {
    let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
    for inc in ledger.incarnations.iter_mut().filter(|i| i.ended.is_none()) {
        if let Some((rss_kib, fds)) = sample(inc.pid) {
            inc.samples.push(Sample {
                at: now_ms(),
                rss_kib,
                fds,
            });
        }
    }
}

/// Counts the server's clients into the ledger (not while it is down).
pub(crate) async fn sample_clients(server: &Arc<Mutex<RedisServer>>, ledger: &Mutex<Ledger>) {
    let count = on_server(server, |s| s.pid().map(|_| s.clients().len() as u64)).await;
    if let Ok(Some(n)) = count {
        let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.clients.push((now_ms(), n));
    }
}

/// Samples every [`EVERY`] until dropped.
pub(crate) async fn sampler(server: Arc<Mutex<RedisServer>>, ledger: Arc<Mutex<Ledger>>) {
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        sample_processes(&ledger);
        sample_clients(&server, &ledger).await;
    }
}
