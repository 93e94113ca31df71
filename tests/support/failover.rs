//! Waiting for delivery to come back after a failover.

use std::time::{Duration, Instant};

use eventbus::{Event, EventBus};

use crate::{Seen, wait_for};

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
