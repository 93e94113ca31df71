//! What [`TestBus::settle`](super::TestBus::settle) returns: the failures since the last
//! settle, readable in an assertion message.

use std::fmt;

use crate::error::Failure;

/// The failures reported since the previous settle: which handler failed on which event, with
/// the error.
///
/// A handler with a retry policy may fail an attempt and pass the next one: that event did
/// not fail, so its failed attempts are not in [`failures`](Self::failures), only in
/// [`attempts`](Self::attempts).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Settled {
    /// What failed in the end, in the order it was reported: handler failures after which no
    /// attempt followed ([`HandlerFailure::will_retry`](crate::HandlerFailure::will_retry) is
    /// false), and every other failure (decode failures, poison entries, dead letters that
    /// could not be stored, ...).
    pub failures: Vec<Failure>,
    /// Every failed handler attempt, in order: those tried again included.
    pub attempts: Vec<Failure>,
}

impl Settled {
    /// Sorts what was reported into final failures and failed attempts.
    pub(crate) fn of(reported: Vec<Failure>) -> Settled {
        let attempts = reported
            .iter()
            .filter(|f| matches!(f, Failure::Handler(_)))
            .cloned()
            .collect();
        let failures = reported
            .into_iter()
            .filter(|f| !matches!(f, Failure::Handler(h) if h.will_retry))
            .collect();
        Settled { failures, attempts }
    }

    /// Whether nothing failed in the end (an attempt that failed and was tried again with
    /// success does not count).
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics, listing the failures, when something failed in the end.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "{self}");
    }
}

impl fmt::Display for Settled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retried = self.attempts.len()
            - self
                .failures
                .iter()
                .filter(|f| matches!(f, Failure::Handler(_)))
                .count();
        if self.failures.is_empty() {
            write!(f, "no failures")?;
        } else {
            writeln!(f, "{} failure(s):", self.failures.len())?;
            for failure in &self.failures {
                writeln!(f, "  - {failure}")?;
            }
        }
        if retried > 0 {
            let sep = if self.failures.is_empty() { " (" } else { "(" };
            write!(f, "{sep}{retried} failed attempt(s) were tried again)")?;
        }
        Ok(())
    }
}
