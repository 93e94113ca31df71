//! Service processes for the outbox and inbox fault tests: the test binary itself, run again
//! with `EVENTBUS_SERVICE` set, executes [`run_if_asked`] (each test file declares a test
//! `service_process` that calls it). `PG_URL` and `REDIS_URL` name the servers.
//!
//! Roles (`EVENTBUS_SERVICE`):
//! - `orders <first id>`: places orders from that id on, one transaction each (the order row
//!   and its `OrderPlaced` through the outbox), printing `committed <id>` after each commit;
//!   runs a relay.
//! - `relay`: only relays, printing `active` when its relay holds the lock.
//! - `billing <claim_idle ms> <ms per charge>`: charges each order in its handler's
//!   transaction (a `charges` row naming this process), printing `charging <id>` as a run
//!   starts.
//!
//! Each prints `ready` once connected and stops cleanly when its standard input closes.

// Each test file uses a part of it.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use eventbus::{DurableOptions, EventBus, HandlerOptions, Inbox, Outbox, Tx};
use eventbus_suite::Seen;
use eventbus_suite::orders::{self, OrderPlaced};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(60);

/// A started service process and the lines it printed.
pub struct Service {
    pub child: Child,
    pub lines: Seen<String>,
}

/// Starts a service process in `role` and waits until it is connected.
pub async fn start(role: &str, pg_url: &str, redis_url: &str) -> Service {
    let me = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(me)
        .args([
            "service_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("EVENTBUS_SERVICE", role)
        .env("PG_URL", pg_url)
        .env("REDIS_URL", redis_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a service process");
    let lines = Seen::new();
    let l = lines.clone();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            // The test harness's `test service_process ... ` may come first on a line.
            let line = line.rsplit("... ").next().unwrap_or(&line).to_owned();
            l.push(line);
        }
    });
    let service = Service { child, lines };
    assert!(
        eventbus_suite::wait_for(LIMIT, || service.printed("ready") > 0).await,
        "the {role} process did not start"
    );
    service
}

impl Service {
    /// How many lines start with `prefix`.
    pub fn printed(&self, prefix: &str) -> usize {
        self.lines
            .snapshot()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// The numbers printed after `prefix` (`committed 7` → 7).
    pub fn numbers(&self, prefix: &str) -> Vec<i64> {
        self.lines
            .snapshot()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running service")
    }

    /// Sends `signal` (`-9`, `-STOP`, `-CONT`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// `kill -9`, and waits until it is gone.
    pub async fn kill(mut self) {
        self.signal("-9");
        let _ = tokio::time::timeout(LIMIT, self.child.wait()).await;
    }

    /// Closes its standard input and waits for a clean exit.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(LIMIT, self.child.wait()).await;
        assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    }
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the service when this process was started as one; returns at once otherwise.
pub async fn run_if_asked() {
    let Ok(role) = std::env::var("EVENTBUS_SERVICE") else {
        return;
    };
    let pg = std::env::var("PG_URL").expect("PG_URL");
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL");
    let words: Vec<&str> = role.split_whitespace().collect();
    let pool = orders::pool(&pg).await;
    let outbox = Outbox::postgres(pool.clone()).poll_interval(Duration::from_millis(100));
    let builder = EventBus::builder().service("orders").outbox(outbox);
    let bus = match words[0] {
        "orders" | "relay" => builder.connect(&redis).await.unwrap(),
        "billing" => billing(&words, pool.clone()).connect(&redis).await.unwrap(),
        other => panic!("unknown role {other}"),
    };
    bus.ready(LIMIT).await.unwrap();
    say(format_args!("ready"));
    let work = async {
        match words[0] {
            "orders" => place_orders(&bus, &pool, words[1].parse().unwrap()).await,
            "relay" => watch_relay(&bus).await,
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stdin_closed() => {}
    }
    bus.shutdown().await.unwrap();
}

fn billing(words: &[&str], pool: sqlx::PgPool) -> eventbus::EventBusBuilder {
    let claim_idle = Duration::from_millis(words[1].parse().unwrap());
    let delay = Duration::from_millis(words[2].parse().unwrap());
    let options = HandlerOptions::new()
        .timeout(Duration::from_secs(60))
        .durable(DurableOptions::new().claim_idle(claim_idle));
    let me = std::process::id().to_string();
    let charge = move |order: OrderPlaced, mut tx: Tx| {
        let me = me.clone();
        async move {
            say(format_args!("charging {}", order.order_id));
            sqlx::query("INSERT INTO charges (order_id, consumer) VALUES ($1, $2)")
                .bind(order.order_id)
                .bind(&me)
                .execute(&mut *tx)
                .await?;
            tokio::time::sleep(delay).await;
            anyhow::Ok(())
        }
    };
    EventBus::builder()
        .service("billing")
        .inbox(Inbox::postgres(pool))
        .handler_with(options, charge)
}

async fn place_orders(bus: &EventBus, pool: &sqlx::PgPool, first: i64) {
    for id in first.. {
        let placed = async {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO orders (id, total) VALUES ($1, $2)")
                .bind(id)
                .bind(id * 100)
                .execute(&mut *tx)
                .await?;
            bus.outbox()
                .publish(
                    &mut tx,
                    OrderPlaced {
                        order_id: id,
                        total: id * 100,
                    },
                )
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        };
        match placed.await {
            Ok(()) => say(format_args!("committed {id}")),
            Err(e) => say(format_args!("error {e}")),
        }
    }
}

async fn watch_relay(bus: &EventBus) {
    let mut was_active = false;
    loop {
        let active = bus.metrics().outbox.is_some_and(|o| o.active);
        if active && !was_active {
            say(format_args!("active"));
        }
        was_active = active;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stdin_closed() {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
}
