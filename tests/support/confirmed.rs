//! Durable publishes counted once a replica holds them: after each batch, the test writes a
//! key of its own on the primary and asks `WAIT 1` there. `WAIT` counts the asking
//! connection's writes, and the replication stream keeps the primary's order, so once the
//! replica has the test's write it has every append the primary answered before it.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventbus::{Event, EventBus};

use crate::Seen;

/// How long a confirmation may take before the batch counts as unconfirmed.
const CONFIRM_LIMIT: Duration = Duration::from_secs(2);

/// What was published: every `n` whose publish returned `Ok`, and those of them a replica
/// confirmed.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Publishes that returned `Ok`.
    pub ok: Seen<u64>,
    /// Publishes that returned `Ok` and that `WAIT 1` confirmed on a replica.
    pub confirmed: Seen<u64>,
}

impl Ledger {
    /// Waits up to `within` until every confirmed `n` is in `handled`; returns those still
    /// missing.
    pub async fn unhandled(&self, handled: &Seen<u64>, within: Duration) -> Vec<u64> {
        let missing = || {
            let got = handled.snapshot();
            let confirmed = self.confirmed.snapshot();
            confirmed
                .into_iter()
                .filter(|n| !got.contains(n))
                .collect::<Vec<_>>()
        };
        crate::wait_for(within, || missing().is_empty()).await;
        missing()
    }
}

/// Whether a replica of the primary at `addr` (`host:port`) has everything the primary took so
/// far: `SET probe_key`, then `WAIT 1 500` answering at least 1. On a cluster `probe_key` must
/// hash to a slot of that primary.
pub async fn replicated(addr: &str, probe_key: &str) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://{addr}/")) else {
        return false;
    };
    let confirm = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("SET")
            .arg(probe_key)
            .arg("1")
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("WAIT")
            .arg(1)
            .arg(500)
            .query_async::<u64>(&mut conn)
            .await
    };
    matches!(tokio::time::timeout(CONFIRM_LIMIT, confirm).await, Ok(Ok(n)) if n >= 1)
}

/// Publishes `make(n)` for every `n` of `ns`, then confirms the batch on the primary at
/// `addr`; records the outcome in `ledger`.
pub async fn publish_batch<E: Event>(
    bus: &EventBus,
    ns: Range<u64>,
    make: &impl Fn(u64) -> E,
    (addr, probe_key): (&str, &str),
    ledger: &Ledger,
) {
    let mut ok = Vec::new();
    for n in ns {
        if bus.publish(make(n)).await.is_ok() {
            ledger.ok.push(n);
            ok.push(n);
        }
    }
    if !ok.is_empty() && replicated(addr, probe_key).await {
        for n in ok {
            ledger.confirmed.push(n);
        }
    }
}

/// Publishes batches of 20 from `first` on, each confirmed on the primary at `addr`, until
/// `stop` is set.
pub async fn publish_until<E: Event>(
    bus: EventBus,
    make: impl Fn(u64) -> E,
    first: u64,
    target: (String, String),
    ledger: Ledger,
    stop: Arc<AtomicBool>,
) {
    let mut n = first;
    while !stop.load(Ordering::Acquire) {
        let target = (target.0.as_str(), target.1.as_str());
        publish_batch(&bus, n..n + 20, &make, target, &ledger).await;
        n += 20;
    }
}

/// After a failover: publishes 20 more `make(n)` to the promoted primary at `addr` (which has
/// no replica of its own, so what it takes is counted on `Ok`), then returns the confirmed
/// publishes that `handled` still lacks after `within`.
///
/// # Panics
///
/// When none of the 20 publishes succeeds.
pub async fn unhandled_after_failover<E: Event>(
    bus: &EventBus,
    make: &impl Fn(u64) -> E,
    target: (&str, &str),
    ledger: &Ledger,
    (handled, within): (&Seen<u64>, Duration),
) -> Vec<u64> {
    let later = Ledger::default();
    publish_batch(bus, 1_000_000..1_000_020, make, target, &later).await;
    assert!(
        !later.ok.is_empty(),
        "no publish succeeded after the failover"
    );
    eprintln!(
        "{} durable publishes returned Ok before and during the failover, {} of them \
         confirmed on the replica; {} after it",
        ledger.ok.len(),
        ledger.confirmed.len(),
        later.ok.len()
    );
    for n in later.ok.snapshot() {
        ledger.confirmed.push(n);
    }
    ledger.unhandled(handled, within).await
}
