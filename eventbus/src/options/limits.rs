//! The bounds every option is clamped to.

use std::time::Duration;

/// The longest duration any option holds: one year, which is "no limit" in practice. Longer
/// values (up to `Duration::MAX`) are clamped to it, so that adding one to an `Instant` can
/// never overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The most runs of one handler in flight at once: the most permits a tokio semaphore holds.
pub(crate) const MAX_CONCURRENCY: usize = tokio::sync::Semaphore::MAX_PERMITS;
