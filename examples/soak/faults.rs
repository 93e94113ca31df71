//! The fault schedule: drawn from the seed (the same seed and length give the same schedule),
//! printed at the start, then applied one fault after another.
//!
//! Faults come in rounds: each round is every kind once, in an order and with durations drawn
//! from the seed, so that even a short run meets each kind.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus_suite::postgres::Postgres;
use eventbus_suite::redis_server::RedisServer;

use crate::proxy::Proxy;
use crate::services::Services;

/// splitmix64: small, seedable, and the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `range` (milliseconds, say).
    fn between(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start).max(1)
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `kill -9` of redis-server, restarted (same port, AOF kept) after `down`.
    RedisKill { down: Duration },
    /// `CLIENT KILL TYPE pubsub` or `TYPE normal`.
    ClientKill { kind: &'static str },
    /// `CLIENT PAUSE` for a while.
    ClientPause { pause: Duration },
    /// `SIGSTOP` of a consumer process, `SIGCONT` after `stop`.
    ConsumerStop { consumer: usize, stop: Duration },
    /// `kill -9` of a consumer process, started again at once.
    ConsumerKill { consumer: usize },
    /// The proxy delays every chunk by `delay` for `span`.
    ProxyDelay { delay: Duration, span: Duration },
    /// The proxy cuts every connection.
    ProxyCut,
    /// `kill -9` of PostgreSQL, restarted (same port and data) after `down`.
    PostgresKill { down: Duration },
}

const KINDS: usize = 9;

impl Fault {
    fn draw(kind: usize, rng: &mut Rng, consumers: usize) -> Fault {
        let ms = Duration::from_millis;
        let consumer = rng.between(0..consumers as u64) as usize;
        match kind {
            0 => Fault::RedisKill {
                down: ms(rng.between(300..2000)),
            },
            1 => Fault::ClientKill { kind: "pubsub" },
            2 => Fault::ClientKill { kind: "normal" },
            3 => Fault::ClientPause {
                pause: ms(rng.between(200..1500)),
            },
            4 => Fault::ConsumerStop {
                consumer,
                stop: ms(rng.between(500..3000)),
            },
            5 => Fault::ConsumerKill { consumer },
            6 => Fault::ProxyDelay {
                delay: ms(rng.between(50..1500)),
                span: ms(rng.between(1000..4000)),
            },
            7 => Fault::ProxyCut,
            _ => Fault::PostgresKill {
                down: ms(rng.between(300..2000)),
            },
        }
    }

    /// About how long applying it takes.
    fn span(&self) -> Duration {
        match self {
            Fault::RedisKill { down } | Fault::PostgresKill { down } => {
                *down + Duration::from_secs(1)
            }
            Fault::ClientPause { pause } => *pause,
            Fault::ConsumerStop { stop, .. } => *stop,
            Fault::ConsumerKill { .. } => Duration::from_secs(2),
            Fault::ProxyDelay { span, .. } => *span,
            Fault::ClientKill { .. } | Fault::ProxyCut => Duration::ZERO,
        }
    }

    /// A short name, for the summary.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Fault::RedisKill { .. } => "redis kill -9 + restart",
            Fault::ClientKill { kind: "pubsub" } => "CLIENT KILL TYPE pubsub",
            Fault::ClientKill { .. } => "CLIENT KILL TYPE normal",
            Fault::ClientPause { .. } => "CLIENT PAUSE",
            Fault::ConsumerStop { .. } => "consumer SIGSTOP/SIGCONT",
            Fault::ConsumerKill { .. } => "consumer kill -9 + restart",
            Fault::ProxyDelay { .. } => "proxy delay",
            Fault::ProxyCut => "proxy cut",
            Fault::PostgresKill { .. } => "postgres kill -9 + restart",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::RedisKill { down } => write!(f, "kill -9 redis-server, restart after {down:?}"),
            Fault::ClientKill { kind } => write!(f, "CLIENT KILL TYPE {kind}"),
            Fault::ClientPause { pause } => write!(f, "CLIENT PAUSE {}", pause.as_millis()),
            Fault::ConsumerStop { consumer, stop } => {
                write!(f, "SIGSTOP consumer c{consumer}, SIGCONT after {stop:?}")
            }
            Fault::ConsumerKill { consumer } => write!(f, "kill -9 consumer c{consumer}, restart"),
            Fault::ProxyDelay { delay, span } => {
                write!(f, "proxy delays every chunk by {delay:?} for {span:?}")
            }
            Fault::ProxyCut => write!(f, "proxy cuts every connection"),
            Fault::PostgresKill { down } => write!(f, "kill -9 postgres, restart after {down:?}"),
        }
    }
}

/// A fault and when it starts, from the start of the run.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) at: Duration,
    pub(crate) fault: Fault,
}

/// The faults of a run: from `first` on, 1.5 to 4.5 s apart, all over before `last`.
pub(crate) fn schedule(
    seed: u64,
    first: Duration,
    last: Duration,
    consumers: usize,
) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let mut at = first;
    let mut plan = Vec::new();
    loop {
        for kind in round(&mut rng) {
            let fault = Fault::draw(kind, &mut rng, consumers);
            if at + fault.span() > last {
                return plan;
            }
            let next = at + fault.span() + Duration::from_millis(rng.between(1500..4500));
            plan.push(Planned { at, fault });
            at = next;
        }
    }
}

/// Every kind once, shuffled (Fisher–Yates).
fn round(rng: &mut Rng) -> [usize; KINDS] {
    let mut kinds: [usize; KINDS] = std::array::from_fn(|i| i);
    for i in (1..KINDS).rev() {
        let j = rng.between(0..(i as u64 + 1)) as usize;
        kinds.swap(i, j);
    }
    kinds
}

/// What faults act on.
#[derive(Debug)]
pub(crate) struct Targets<'a> {
    pub(crate) server: &'a Arc<Mutex<RedisServer>>,
    pub(crate) postgres: Option<&'a Arc<Postgres>>,
    pub(crate) proxy: &'a Proxy,
    pub(crate) services: &'a mut Services,
}

/// Applies one fault and waits until it is over (the server back, the process resumed).
pub(crate) async fn apply(fault: &Fault, targets: &mut Targets<'_>) -> anyhow::Result<()> {
    match fault {
        Fault::RedisKill { down } => {
            on_server(targets.server, RedisServer::kill).await?;
            tokio::time::sleep(*down).await;
            on_server(targets.server, RedisServer::restart).await?;
        }
        Fault::ClientKill { kind } => {
            let args = ["CLIENT", "KILL", "TYPE", kind];
            on_server(targets.server, move |s| drop(s.cli(&args))).await?;
        }
        Fault::ClientPause { pause } => {
            let ms = pause.as_millis().to_string();
            on_server(targets.server, move |s| {
                drop(s.cli(&["CLIENT", "PAUSE", &ms]))
            })
            .await?;
            tokio::time::sleep(*pause).await;
        }
        Fault::ConsumerStop { consumer, stop } => {
            targets.services.stop_consumer(*consumer)?;
            tokio::time::sleep(*stop).await;
            targets.services.continue_consumer(*consumer)?;
        }
        Fault::ConsumerKill { consumer } => targets.services.restart_consumer(*consumer).await?,
        Fault::ProxyDelay { delay, span } => {
            targets.proxy.set_delay(*delay);
            tokio::time::sleep(*span).await;
            targets.proxy.set_delay(Duration::ZERO);
        }
        Fault::ProxyCut => targets.proxy.cut_all(),
        Fault::PostgresKill { down } => {
            let Some(pg) = targets.postgres.cloned() else {
                return Ok(());
            };
            let killed = pg.clone();
            tokio::task::spawn_blocking(move || killed.kill()).await?;
            tokio::time::sleep(*down).await;
            tokio::task::spawn_blocking(move || pg.restart()).await?;
        }
    }
    Ok(())
}

/// Runs `f` on the server in a blocking thread (redis-cli, process start and stop block).
pub(crate) async fn on_server<T: Send + 'static>(
    server: &Arc<Mutex<RedisServer>>,
    f: impl FnOnce(&mut RedisServer) -> T + Send + 'static,
) -> anyhow::Result<T> {
    let server = server.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut guard = server.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    })
    .await?;
    Ok(out)
}
