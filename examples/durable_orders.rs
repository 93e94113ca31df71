//! Durable delivery: orders on a Redis stream, shared by the worker processes of one service.
//! Every order is handled once by one of the workers; a worker that was down gets what was
//! published meanwhile; an order whose worker died is claimed by another.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example durable_orders                      # 1000 orders, two worker processes
//! cargo run --example durable_orders -- worker            # one worker, until Ctrl-C
//! cargo run --example durable_orders -- publish --count 500
//! ```
//!
//! A worker prints `ready` once it reads its group, then `handled <order> <deliveries>` per
//! order. Options: `--count N`, `--claim-idle-ms N` (how long an order may sit on a dead
//! worker before another claims it), `--delay-ms N` (time spent per order), `--group NAME`.
//! `REDIS_URL=redis://host:port` uses another server.

use std::io::Write;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use eventbus::{DurableOptions, Event, EventBus, HandlerOptions};
use eventbus_suite::connect;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// An order, appended to the stream `events:order_placed`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order_placed", durable)]
struct OrderPlaced {
    order_id: u64,
    total: f64,
}

/// Command-line options.
struct Args {
    role: String,
    count: u64,
    claim_idle: Duration,
    delay: Duration,
    group: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        role: "scenario".into(),
        count: 1000,
        claim_idle: Duration::from_secs(5),
        delay: Duration::ZERO,
        group: "billing:charge".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "worker" | "publish" | "scenario" => args.role = arg,
            "--count" => args.count = value()?.parse()?,
            "--claim-idle-ms" => args.claim_idle = Duration::from_millis(value()?.parse()?),
            "--delay-ms" => args.delay = Duration::from_millis(value()?.parse()?),
            "--group" => args.group = value()?,
            other => bail!("unknown argument `{other}`: see the top of examples/durable_orders.rs"),
        }
    }
    Ok(args)
}

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Handles orders until Ctrl-C, SIGTERM or the end of standard input.
async fn worker(args: Args) -> anyhow::Result<()> {
    let delay = args.delay;
    let charge = move |order: OrderPlaced| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "handled {}", order.order_id)?;
        anyhow::Ok(())
    };
    let options = HandlerOptions::new().name("charge").durable(
        DurableOptions::new()
            .group(args.group)
            .claim_idle(args.claim_idle),
    );
    let bus = connect(
        EventBus::builder()
            .service("billing")
            .handler_with(charge, options),
        &url(),
    )
    .await?;
    bus.ready(Duration::from_secs(10)).await?;
    println!("ready");
    let stdin_closed = async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    };
    tokio::select! {
        _ = eventbus::shutdown_signal() => {}
        _ = stdin_closed => {}
    }
    let report = bus.shutdown().await?;
    eprintln!("worker stopped: {report:?}");
    Ok(())
}

/// Appends `count` orders; prints each entry id's count at the end.
async fn publish(count: u64) -> anyhow::Result<()> {
    let bus = connect(EventBus::builder().service("shop"), &url()).await?;
    for order_id in 0..count {
        bus.publish(OrderPlaced {
            order_id,
            total: 9.5,
        })
        .await?;
    }
    println!("published {count}");
    bus.shutdown().await?;
    Ok(())
}

/// Two worker processes share 1000 orders: each order is handled once, by one of them.
async fn scenario(args: Args) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut child = tokio::process::Command::new(&me)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let mut lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        match lines.next_line().await? {
            Some(line) if line == "ready" => {}
            other => bail!("a worker did not start: {other:?}"),
        }
        workers.push((child, lines));
    }
    publish(args.count).await?;
    let handled = Arc::new(std::sync::Mutex::new(vec![0u64; 2]));
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (seen.len() as u64) < args.count {
        for (i, (_, lines)) in workers.iter_mut().enumerate() {
            let next = tokio::time::timeout(Duration::from_millis(50), lines.next_line()).await;
            if let Ok(Ok(Some(line))) = next
                && let Some(id) = line.strip_prefix("handled ")
            {
                seen.insert(id.to_owned());
                handled.lock().unwrap_or_else(|e| e.into_inner())[i] += 1;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("only {} of {} orders were handled", seen.len(), args.count);
        }
    }
    let split = handled.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "{} orders handled once each: worker 1 took {}, worker 2 took {}",
        seen.len(),
        split[0],
        split[1]
    );
    for (mut child, _) in workers {
        drop(child.stdin.take());
        child.wait().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(args) => match args.role.as_str() {
            "worker" => worker(args).await,
            "publish" => publish(args.count).await,
            _ => scenario(args).await,
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durable_orders: {e:#}");
            ExitCode::FAILURE
        }
    }
}
