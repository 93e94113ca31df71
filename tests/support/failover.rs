//! The failover tests' bus, and waiting for delivery to come back after a failover.

use std::time::{Duration, Instant};

use eventbus::redis::RedisOptions;
use eventbus::{Event, EventBus};
use serde::de::DeserializeOwned;

use crate::{Ping, Seen, wait_for};

/// A bus of service `service` on `url` that records the `n` of every [`Ping`] in `pings` and,
/// through `n_of`, of every `J` (a durable type of the test's own) in `jobs`; ready when
/// returned.
///
/// # Panics
///
/// When it cannot connect or become ready within ten seconds.
pub async fn recording_bus<J>(
    url: &str,
    service: &str,
    options: RedisOptions,
    (pings, jobs): (&Seen<u64>, &Seen<u64>),
    n_of: fn(&J) -> u64,
) -> EventBus
where
    J: Event + DeserializeOwned + Send + Sync + 'static,
{
    let (p, j) = (pings.clone(), jobs.clone());
    let bus = EventBus::builder()
        .service(service)
        .redis_options(options)
        .handler(move |e: Ping| {
            let p = p.clone();
            async move { p.push(e.n) }
        })
        .handler(move |e: J| {
            let j = j.clone();
            async move { j.push(n_of(&e)) }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    bus.ready(Duration::from_secs(10)).await.unwrap();
    bus
}

/// Publishes `make(n)` with growing `n` (from `first`) until `seen` holds one of them (a value
/// of at least `first`); returns how long it took. Publish errors on the way are expected
/// while the bus moves to the new primary.
///
/// # Panics
///
/// When nothing is delivered within `within`.
pub async fn until_delivered<E: Event + Clone>(
    bus: &EventBus,
    seen: &Seen<u64>,
    first: u64,
    within: Duration,
    make: impl Fn(u64) -> E,
) -> Duration {
    let started = Instant::now();
    let mut n = first;
    loop {
        assert!(
            started.elapsed() < within,
            "no delivery within {within:?} (last tried {n}, seen {:?})",
            seen.snapshot()
        );
        let _ = bus.publish(make(n)).await;
        if wait_for(Duration::from_millis(300), || {
            seen.snapshot().iter().any(|x| *x >= first)
        })
        .await
        {
            return started.elapsed();
        }
        n += 1;
    }
}
