//! A durable worker process for the tests that kill and restart consumers: the test binary
//! itself, run again with `EVENTBUS_WORKER` set, executes [`run_if_asked`] (each test file
//! declares a test `worker_process` that calls it). It reads `billing:charge` on
//! `events:order_placed`, prints `ready`, then `handled <order>` per order, and shuts down
//! cleanly when its standard input closes.
//!
//! `EVENTBUS_WORKER` holds `claim_idle_ms,delay_ms,consumer_expiry_ms` and `REDIS_URL` the
//! server.

// Each test file uses a part of it.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use eventbus::{DurableOptions, Event, EventBus, HandlerOptions};
use eventbus_suite::Seen;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(60);

/// The event, as the `durable_orders` example has it.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", durable)]
pub struct OrderPlaced {
    pub order_id: u64,
    pub total: f64,
}

/// A started worker process and the orders it printed as handled.
pub struct Worker {
    pub child: Child,
    pub handled: Seen<u64>,
}

/// Starts a worker (`claim_idle`, time per order, consumer expiry in ms) and waits until it
/// reads its group.
pub async fn start(url: &str, claim_idle_ms: u64, delay_ms: u64, expiry_ms: u64) -> Worker {
    let me = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(me)
        .args([
            "worker_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            "EVENTBUS_WORKER",
            format!("{claim_idle_ms},{delay_ms},{expiry_ms}"),
        )
        .env("REDIS_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a worker");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            // The test harness's `test worker_process ... ` comes first on the line.
            if line.ends_with("ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "the worker did not start");
    let handled = Seen::new();
    let h = handled.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(id) = line.strip_prefix("handled ").and_then(|s| s.parse().ok()) {
                h.push(id);
            }
        }
    });
    Worker { child, handled }
}

impl Worker {
    /// The worker's process id, as it appears in its consumer name (`host-pid-n`).
    pub fn tag(&self) -> String {
        format!("-{}-", self.child.id().expect("a running worker"))
    }

    /// Closes its standard input and waits for a clean exit.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(LIMIT, self.child.wait()).await;
        assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    }
}

/// Runs the worker when this process was started as one; returns at once otherwise.
pub async fn run_if_asked() {
    let Ok(spec) = std::env::var("EVENTBUS_WORKER") else {
        return;
    };
    let ms: Vec<u64> = spec.split(',').map(|v| v.parse().unwrap()).collect();
    let ms = |i: usize| Duration::from_millis(ms[i]);
    let (claim_idle, delay, expiry) = (ms(0), ms(1), ms(2));
    let charge = move |order: OrderPlaced| async move {
        tokio::time::sleep(delay).await;
        let mut out = std::io::stdout().lock();
        writeln!(out, "handled {}", order.order_id)?;
        out.flush()?;
        anyhow::Ok(())
    };
    let durable = DurableOptions::new()
        .group("billing:charge")
        .claim_idle(claim_idle)
        .consumer_expiry(expiry);
    let options = HandlerOptions::new()
        .timeout(Duration::from_secs(30).max(delay * 2))
        .durable(durable);
    let url = std::env::var("REDIS_URL").unwrap();
    let bus = EventBus::builder()
        .service("billing")
        .handler_with(options, charge)
        .connect(&url)
        .await
        .unwrap();
    bus.ready(LIMIT).await.unwrap();
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
    bus.shutdown().await.unwrap();
}
