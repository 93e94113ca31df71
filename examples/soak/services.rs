//! The service processes of a run: this binary started again with a role, its output read
//! line by line into the ledger. Every process is killed when its handle is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::accounting::Ledger;
use crate::workload::now_ms;

/// How long a process may take to say `ready`, and to stop.
const START_LIMIT: Duration = Duration::from_secs(60);

/// One running process and the task reading its output.
#[derive(Debug)]
struct Process {
    incarnation: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    reader: JoinHandle<()>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The publishers and consumers of a run.
#[derive(Debug)]
pub(crate) struct Services {
    exe: PathBuf,
    url: String,
    /// PostgreSQL's URL, for the orders pair.
    pg: Option<String>,
    rate: f64,
    ledger: Arc<Mutex<Ledger>>,
    publishers: Vec<Process>,
    consumers: Vec<Process>,
}

impl Services {
    pub(crate) fn new(
        url: String,
        pg: Option<String>,
        rate: f64,
        ledger: Arc<Mutex<Ledger>>,
    ) -> anyhow::Result<Self> {
        Ok(Services {
            exe: std::env::current_exe()?,
            url,
            pg,
            rate,
            ledger,
            publishers: Vec::new(),
            consumers: Vec::new(),
        })
    }

    /// Starts `n` consumers (`c0`, `c1`, ...) and waits until each is ready.
    pub(crate) async fn start_consumers(&mut self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let process = self.spawn("consumer", &format!("c{i}")).await?;
            self.consumers.push(process);
        }
        Ok(())
    }

    /// Starts `n` publishers (`p0`, `p1`, ...), each at the run's rate.
    pub(crate) async fn start_publishers(&mut self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let process = self.spawn("publisher", &format!("p{i}")).await?;
            self.publishers.push(process);
        }
        Ok(())
    }

    async fn spawn(&self, role: &str, name: &str) -> anyhow::Result<Process> {
        let mut command = Command::new(&self.exe);
        command
            .args([role, "--name", name, "--url", &self.url])
            .args(["--rate", &self.rate.to_string()]);
        if let Some(pg) = &self.pg {
            command.args(["--pg", pg]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {role} {name}"))?;
        let pid = child.id().context("the process has no pid")?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let incarnation = self.ledger_lock().begin(name, role, pid);
        let ready = wait_ready(&mut lines, name, incarnation, &self.ledger).await?;
        self.ledger_lock().ready(incarnation, ready);
        let reader = tokio::spawn(read_lines(lines, incarnation, self.ledger.clone()));
        Ok(Process {
            incarnation,
            child,
            stdin,
            reader,
        })
    }

    fn ledger_lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `SIGSTOP` of consumer `i`, recorded from when the signal was sent: the process is
    /// stopped from then on.
    pub(crate) fn stop_consumer(&self, i: usize) -> anyhow::Result<()> {
        self.signal_consumer(i, "-STOP")?;
        let incarnation = self.consumers[i].incarnation;
        self.ledger_lock().paused(incarnation, now_ms());
        Ok(())
    }

    /// `SIGCONT` of consumer `i`, recorded from just before the signal: the process was
    /// stopped until then. So the recorded stop is never longer than the real one.
    pub(crate) fn continue_consumer(&self, i: usize) -> anyhow::Result<()> {
        let incarnation = self.consumers[i].incarnation;
        self.ledger_lock().resumed(incarnation, now_ms());
        self.signal_consumer(i, "-CONT")
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to consumer `i`.
    fn signal_consumer(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.consumers[i]
            .child
            .id()
            .context("consumer already gone")?;
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
        }
        Ok(())
    }

    /// `kill -9` of consumer `i`, then a new process in its place.
    pub(crate) async fn restart_consumer(&mut self, i: usize) -> anyhow::Result<()> {
        let mut old = self.consumers.remove(i);
        old.child.kill().await?;
        self.ledger_lock().end(old.incarnation, now_ms(), true);
        let _ = (&mut old.reader).await;
        let name = format!("c{i}");
        let process = self.spawn("consumer", &name).await?;
        self.consumers.insert(i, process);
        Ok(())
    }

    /// Closes the publishers' stdin and waits until they published their last tick and exited.
    pub(crate) async fn stop_publishers(&mut self) -> anyhow::Result<()> {
        let publishers = std::mem::take(&mut self.publishers);
        self.stop_all(publishers).await
    }

    /// Closes the consumers' stdin and waits until they shut down cleanly.
    pub(crate) async fn stop_consumers(&mut self) -> anyhow::Result<()> {
        let consumers = std::mem::take(&mut self.consumers);
        self.stop_all(consumers).await
    }

    async fn stop_all(&self, processes: Vec<Process>) -> anyhow::Result<()> {
        for mut p in processes {
            drop(p.stdin.take());
            let status = tokio::time::timeout(START_LIMIT, p.child.wait())
                .await
                .context("a service did not stop in time")??;
            self.ledger_lock().end(p.incarnation, now_ms(), false);
            let _ = (&mut p.reader).await;
            if !status.success() {
                bail!("a service exited with {status}");
            }
        }
        Ok(())
    }
}

/// Reads the new process's lines until its `ready <ms>`, recording those before it (a
/// consumer may handle events before it says it is ready); returns the time it gave.
async fn wait_ready(
    lines: &mut Lines<BufReader<ChildStdout>>,
    name: &str,
    incarnation: usize,
    ledger: &Mutex<Ledger>,
) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .with_context(|| format!("{name} did not get ready in {START_LIMIT:?}"))??;
        let Some(line) = line else {
            bail!("{name} exited before it was ready");
        };
        if let Some(t) = line.strip_prefix("ready ") {
            return Ok(t.parse()?);
        }
        ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(incarnation, &line);
    }
}

async fn read_lines(
    mut lines: Lines<BufReader<ChildStdout>>,
    incarnation: usize,
    ledger: Arc<Mutex<Ledger>>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.record(incarnation, &line);
    }
}
