//! Time limits for the end-to-end tests: short Redis timeouts ([`fast`]), a bound on a whole
//! test ([`bounded`]) and waiting for a condition with a deadline ([`wait_for`],
//! [`alive_tasks`]).

use std::future::Future;
use std::time::Duration;

use eventbus::redis::RedisOptions;

/// [`fast`]'s connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// [`fast`]'s response timeout: how long a command, a watchdog `PING` included, may take.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// [`fast`]'s publish deadline.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(2);
/// How long [`bounded`] lets a test body run.
pub const TEST_BOUND: Duration = Duration::from_secs(60);

/// Redis options with short timeouts, so a failure shows in seconds: [`CONNECT_TIMEOUT`],
/// [`RESPONSE_TIMEOUT`], [`PUBLISH_DEADLINE`] and a reconnect backoff of 50 ms to 400 ms.
/// The watchdog keeps its default interval; tests about it set their own.
pub fn fast() -> RedisOptions {
    RedisOptions::new()
        .connect_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .publish_deadline(PUBLISH_DEADLINE)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
}

/// Runs a test body for at most [`TEST_BOUND`], so that nothing hangs.
///
/// # Panics
///
/// When the body does not finish in time.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_BOUND, body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_BOUND:?}"));
}

/// Polls `check` every 5 ms until it holds or `within` passes; returns whether it held.
pub async fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the query `query` every 5 ms until its answer satisfies `done` or `within` passes;
/// returns the last answer, for the caller's assertion.
pub async fn poll_until<T, Fut: Future<Output = T>>(
    within: Duration,
    mut query: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = query().await;
        if done(&answer) || tokio::time::Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many tasks are alive on the current tokio runtime.
///
/// For work the bus hands to a task of its own that leaves no other trace when it does the
/// right thing (a dropped subscription's unsubscribe): wait with [`wait_for`] until the count
/// is back to what it was in the same steady state.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}
