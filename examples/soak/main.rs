//! Soak harness: publishers and consumers in separate processes on a redis-server of its own
//! (AOF, `appendfsync always`), through a fault-injecting TCP proxy, for minutes; with
//! `--chaos`, a seeded schedule of faults. At the end it checks what was delivered against what
//! was published and prints one table; it exits non-zero when an invariant is broken.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10 --seed 7 --chaos
//! cargo run --release --example soak -- --minutes 1 --seed 42 --chaos --rate 10
//! ```
//!
//! Options: `--minutes N` (fractions allowed; 1), `--seed S` (1), `--chaos` (faults; none by
//! default), `--rate R` (publishes a second per publisher, half pub/sub ticks and half durable
//! jobs; 20). Two publisher processes and two consumer processes run; each consumer has two
//! pub/sub handlers (one slow with a small queue) and three durable ones (one slow, one that
//! fails the first run of every fifth job and is retried).
//!
//! The invariants:
//! - durable: every publish that returned `Ok` was handled by every consumer group at least
//!   once (duplicates are counted), and nothing is pending or unread after the drain;
//! - durable: a group ran an entry twice only after the consumer that held it died (`kill -9`,
//!   or a `SIGSTOP` longer than `claim_idle`) or a run of it outlived the handler's timeout;
//! - durable: no dead letters, and none of a job whose handler never failed a run of it;
//! - pub/sub: every tick a consumer did not handle falls in a gap it reported (`Disconnected`
//!   … `Resubscribed`, with a margin) or is covered by its handler's overflow drops;
//! - each cleanly stopped consumer's metrics agree with its own counts;
//! - after warm-up, RSS, open descriptors and the server's client connections stay flat;
//! - orders (with PostgreSQL installed): each publisher also places an order every fourth
//!   tick, its row and event committed together through the outbox; each consumer charges
//!   orders in a handler that takes a `Tx` (the inbox); PostgreSQL is among the processes the
//!   chaos kills. Every committed order is charged exactly once, no charge or event exists for
//!   an order that does not, and the outbox drains (`orders.rs`).
//!
//! The roles `publisher` and `consumer` are this binary started by the orchestrator.

mod accounting;
mod faults;
mod orders;
mod proxy;
mod resources;
mod services;
mod workload;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use eventbus_suite::postgres::Postgres;
use eventbus_suite::redis_server::RedisServer;
use tokio::time::Instant;

use accounting::{GroupState, Ledger, Letter, ServerState};
use faults::{Planned, Targets, on_server};
use proxy::Proxy;
use services::Services;
use workload::{JOB_DEAD_LETTERS, JOB_HANDLERS, JOB_STREAM, SERVICE};

const PUBLISHERS: usize = 2;
const CONSUMERS: usize = 2;
/// Faults start after this, and resources are compared from here on.
const WARMUP: Duration = Duration::from_secs(10);
/// How long the drain may take after the publishers stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Command-line options.
#[derive(Debug, Clone)]
struct Args {
    role: String,
    minutes: f64,
    seed: u64,
    chaos: bool,
    rate: f64,
    name: String,
    url: String,
    /// PostgreSQL's URL, given to the service processes.
    pg: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        role: "orchestrate".into(),
        minutes: 1.0,
        seed: 1,
        chaos: false,
        rate: 20.0,
        name: String::new(),
        url: String::new(),
        pg: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "publisher" | "consumer" => args.role = arg,
            "--minutes" => args.minutes = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--chaos" => args.chaos = true,
            "--rate" => args.rate = value()?.parse()?,
            "--name" => args.name = value()?,
            "--url" => args.url = value()?,
            "--pg" => args.pg = Some(value()?),
            other => bail!("unknown argument `{other}`: see the top of examples/soak/main.rs"),
        }
    }
    if !(args.minutes > 0.0 && args.rate > 0.0) {
        bail!("--minutes and --rate must be positive");
    }
    Ok(args)
}

/// What the orchestrator holds; every process in it is stopped when it is dropped.
struct Run {
    args: Args,
    server: Arc<Mutex<RedisServer>>,
    /// PostgreSQL and a pool on it, for the orders pair (none when it is not installed).
    postgres: Option<(Arc<Postgres>, sqlx::PgPool)>,
    proxy: Proxy,
    ledger: Arc<Mutex<Ledger>>,
    services: Services,
    started: Instant,
}

impl Run {
    async fn start(args: Args) -> anyhow::Result<Run> {
        let server = tokio::task::spawn_blocking(|| {
            RedisServer::builder()
                .arg("--appendonly", "yes")
                .arg("--appendfsync", "always")
                .start()
        })
        .await?;
        let proxy = Proxy::start(server.port(), args.seed).await?;
        let url = format!("redis://127.0.0.1:{}", proxy.port());
        println!(
            "redis-server on port {} (AOF, appendfsync always), services through the proxy on port {}",
            server.port(),
            proxy.port()
        );
        let postgres = start_postgres().await?;
        let pg_url = postgres.as_ref().map(|(pg, _)| pg.url());
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut services = Services::new(url, pg_url, args.rate, ledger.clone())?;
        services.start_consumers(CONSUMERS).await?;
        services.start_publishers(PUBLISHERS).await?;
        Ok(Run {
            args,
            server: Arc::new(Mutex::new(server)),
            postgres,
            proxy,
            ledger,
            services,
            started: Instant::now(),
        })
    }

    fn length(&self) -> Duration {
        Duration::from_secs_f64(self.args.minutes * 60.0)
    }

    /// Applies the schedule, then waits for the end of the run.
    async fn run_faults(&mut self, plan: &[Planned]) -> anyhow::Result<()> {
        for planned in plan {
            tokio::time::sleep_until(self.started + planned.at).await;
            println!(
                "{:>7.1}s  fault: {}",
                planned.at.as_secs_f64(),
                planned.fault
            );
            let mut targets = Targets {
                server: &self.server,
                postgres: self.postgres.as_ref().map(|(pg, _)| pg),
                proxy: &self.proxy,
                services: &mut self.services,
            };
            faults::apply(&planned.fault, &mut targets)
                .await
                .with_context(|| format!("applying `{}`", planned.fault))?;
        }
        tokio::time::sleep_until(self.started + self.length()).await;
        Ok(())
    }

    /// Samples resources (the publishers' last sample, the server's clients at the end);
    /// stops the publishers; waits until every group handled every job and has nothing
    /// pending, and until the consumers got the last ticks; samples the consumers; stops them.
    /// Returns what the server holds.
    async fn drain(&mut self) -> anyhow::Result<ServerState> {
        println!("{:>7.1}s  draining", self.started.elapsed().as_secs_f64());
        resources::sample_processes(&self.ledger);
        resources::sample_clients(&self.server, &self.ledger).await;
        self.services.stop_publishers().await?;
        // The publishers ran the outbox's relays; what they left is relayed from here.
        let relay = match &self.postgres {
            Some((_, pool)) => Some(orders::relay(&self.server_url(), pool).await?),
            None => None,
        };
        let deadline = Instant::now() + DRAIN_LIMIT;
        let mut state = ServerState::default();
        while Instant::now() < deadline {
            state = server_state(&self.server).await?;
            let settled = state.groups.iter().all(|g| g.pending == 0 && g.lag == 0);
            let orders = match &self.postgres {
                Some((_, pool)) => orders::settled(pool).await,
                None => true,
            };
            if settled
                && orders
                && self.ledger().jobs_missing() == 0
                && self.ledger().ticks_drained(PUBLISHERS)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        state.letters = dead_letters(&self.server).await?;
        if let Some(relay) = relay {
            relay.shutdown().await?;
        }
        resources::sample_processes(&self.ledger);
        self.services.stop_consumers().await?;
        println!("{:>7.1}s  stopped", self.started.elapsed().as_secs_f64());
        Ok(state)
    }

    /// The server's own URL, not through the proxy.
    fn server_url(&self) -> String {
        self.server.lock().unwrap_or_else(|e| e.into_inner()).url()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A throwaway PostgreSQL with the orders pair's tables; none, with a note, when it is not
/// installed (in CI that is a failure).
async fn start_postgres() -> anyhow::Result<Option<(Arc<Postgres>, sqlx::PgPool)>> {
    let Some(pg) = tokio::task::spawn_blocking(Postgres::start_or_skip).await? else {
        println!("PostgreSQL is not installed: no orders pair");
        return Ok(None);
    };
    let pool = orders::pool(&pg.url()).await?;
    orders::create_tables(&pool).await?;
    println!(
        "PostgreSQL on port {} (fsync on) for the orders pair",
        pg.port()
    );
    Ok(Some((Arc::new(pg), pool)))
}

/// The orders pair's rows: from the tables and the order stream.
async fn order_rows(run: &Run) -> anyhow::Result<Vec<accounting::Row>> {
    let Some((_, pool)) = &run.postgres else {
        return Ok(Vec::new());
    };
    let reply = on_server(&run.server, |s| {
        s.cli(&["XRANGE", "events:soak_order", "-", "+"])
    })
    .await?;
    orders::check(pool, &orders::stream_ids(&reply)).await
}

/// Each durable group's pending count (`XPENDING`) and lag (`XINFO GROUPS`), and the number
/// of dead letters.
async fn server_state(server: &Arc<Mutex<RedisServer>>) -> anyhow::Result<ServerState> {
    let (info, pending, dead) = on_server(server, |s| {
        let pending: Vec<String> = JOB_HANDLERS
            .iter()
            .map(|h| s.cli(&["XPENDING", JOB_STREAM, &format!("{SERVICE}:{h}")]))
            .collect();
        let dead = s.cli(&["XLEN", JOB_DEAD_LETTERS]);
        (s.cli(&["XINFO", "GROUPS", JOB_STREAM]), pending, dead)
    })
    .await?;
    let mut groups = Vec::new();
    for (h, reply) in JOB_HANDLERS.iter().zip(&pending) {
        let group = format!("{SERVICE}:{h}");
        let lag =
            info_field(&info, &group, "lag").with_context(|| format!("no lag for {group}"))?;
        groups.push(GroupState {
            pending: first_number(reply)?,
            lag,
            group,
        });
    }
    Ok(ServerState {
        groups,
        dead_letters: first_number(&dead)?,
        letters: Vec::new(),
    })
}

/// The entries of the jobs' dead-letter stream.
async fn dead_letters(server: &Arc<Mutex<RedisServer>>) -> anyhow::Result<Vec<Letter>> {
    let reply = on_server(server, |s| s.cli(&["XRANGE", JOB_DEAD_LETTERS, "-", "+"])).await?;
    Ok(accounting::parse_letters(&reply))
}

fn first_number(reply: &str) -> anyhow::Result<u64> {
    let first = reply.lines().next().unwrap_or_default().trim();
    first
        .parse()
        .with_context(|| format!("not a count: {reply:?}"))
}

/// A field of one group in `XINFO GROUPS`' reply, as redis-cli prints it (name and value
/// on alternate lines, group after group).
fn info_field(info: &str, group: &str, field: &str) -> Option<u64> {
    let words: Vec<&str> = info.lines().map(str::trim).collect();
    let start = words.windows(2).position(|w| w == ["name", group])?;
    let rest = &words[start + 2..];
    let end = rest.iter().position(|w| *w == "name").unwrap_or(rest.len());
    let at = rest[..end].iter().position(|w| *w == field)?;
    rest.get(at + 1)?.parse().ok()
}

fn print_plan(args: &Args, plan: &[Planned]) {
    println!(
        "soak: {} min, seed {}, rate {}/s per publisher, {PUBLISHERS} publishers, {CONSUMERS} consumers, chaos {}",
        args.minutes,
        args.seed,
        args.rate,
        if args.chaos { "on" } else { "off" }
    );
    println!("fault schedule ({} faults):", plan.len());
    for p in plan {
        println!("  {:>7.1}s  {}", p.at.as_secs_f64(), p.fault);
    }
}

fn print_summary(ledger: &Ledger, plan: &[Planned]) {
    let (ticks, jobs, unconfirmed, gaps) = ledger.totals();
    let mut kinds: Vec<&str> = plan.iter().map(|p| p.fault.kind()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let counts: Vec<String> = kinds
        .iter()
        .map(|k| {
            format!(
                "{k} ×{}",
                plan.iter().filter(|p| p.fault.kind() == *k).count()
            )
        })
        .collect();
    println!(
        "faults applied: {}",
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    );
    println!(
        "published Ok: {ticks} pub/sub ticks, {jobs} durable jobs; {unconfirmed} publishes returned an error; {} orders failed to commit; {gaps} gap(s) reported; {} process incarnations",
        ledger.orders_failed,
        ledger.incarnations.len()
    );
}

async fn orchestrate(args: Args) -> anyhow::Result<bool> {
    let length = Duration::from_secs_f64(args.minutes * 60.0);
    let plan = if args.chaos {
        let last = length.saturating_sub(Duration::from_secs(5));
        faults::schedule(args.seed, WARMUP + Duration::from_secs(2), last, CONSUMERS)
    } else {
        Vec::new()
    };
    print_plan(&args, &plan);
    let mut run = Run::start(args).await?;
    let sampler = tokio::spawn(resources::sampler(run.server.clone(), run.ledger.clone()));
    let faulted = run.run_faults(&plan).await;
    sampler.abort();
    faulted?;
    let state = run.drain().await?;
    let order_rows = order_rows(&run).await?;
    let ledger = run.ledger();
    print_summary(&ledger, &plan);
    println!("proxy: {} connections accepted", run.proxy.connections());
    let mut rows = accounting::check(&ledger, &state, WARMUP.as_millis() as u64);
    rows.extend(order_rows);
    Ok(accounting::print(&rows))
}

async fn run(args: Args) -> anyhow::Result<bool> {
    match args.role.as_str() {
        "publisher" => workload::publisher(&args.name, &args.url, args.rate, args.pg.as_deref())
            .await
            .map(|()| true),
        "consumer" => workload::consumer(&args.url, args.pg.as_deref())
            .await
            .map(|()| true),
        _ => {
            let bound = Duration::from_secs_f64(args.minutes * 60.0) + Duration::from_secs(300);
            // Returning drops the run: every process it started is killed.
            tokio::select! {
                outcome = tokio::time::timeout(bound, orchestrate(args)) => {
                    outcome.context("the run did not finish in time")?
                }
                _ = eventbus::shutdown_signal() => bail!("interrupted"),
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}
