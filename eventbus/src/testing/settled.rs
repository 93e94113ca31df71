//! What [`TestBus::settle`](super::TestBus::settle) returns: the failures since the last
//! settle, readable in an assertion message.

use std::fmt;

use crate::error::Failure;

/// The failures reported since the previous settle: which handler failed on which event, with
/// the error.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Settled {
    /// In the order they were reported.
    pub failures: Vec<Failure>,
}

impl Settled {
    /// Whether nothing failed.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics, listing the failures, when something failed.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "{self}");
    }
}

impl fmt::Display for Settled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return write!(f, "no failures");
        }
        writeln!(f, "{} failure(s):", self.failures.len())?;
        for failure in &self.failures {
            writeln!(f, "  - {failure}")?;
        }
        Ok(())
    }
}
