//! The in-process hub's record of handled event ids, with expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{BoxFuture, DedupeStore, TransportError};
use crate::sync::lock;

/// Handled ids per (scope, id), each with the instant it expires.
#[derive(Debug, Default)]
pub(super) struct MemoryDedupe {
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    expires: HashMap<(String, String), Instant>,
    /// The size after the last sweep of expired records: the next sweep runs at twice that.
    swept_at: usize,
}

impl Records {
    fn sweep(&mut self, now: Instant) {
        if self.expires.len() >= 2 * self.swept_at.max(512) {
            self.expires.retain(|_, at| *at > now);
            self.swept_at = self.expires.len();
        }
    }
}

impl DedupeStore for MemoryDedupe {
    fn seen<'a>(
        &'a self,
        scope: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        let now = Instant::now();
        let records = lock(&self.records);
        let seen = records
            .expires
            .get(&(scope.to_owned(), id.to_owned()))
            .is_some_and(|at| *at > now);
        Box::pin(async move { Ok(seen) })
    }

    fn record<'a>(
        &'a self,
        scope: &'a str,
        id: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        let now = Instant::now();
        let mut records = lock(&self.records);
        records.sweep(now);
        records
            .expires
            .insert((scope.to_owned(), id.to_owned()), now + window);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn records_are_per_scope_and_expire() {
        let store = MemoryDedupe::default();
        assert!(!store.seen("g1", "e1").await.unwrap());
        store
            .record("g1", "e1", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(store.seen("g1", "e1").await.unwrap());
        assert!(!store.seen("g2", "e1").await.unwrap());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!store.seen("g1", "e1").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_records_are_swept() {
        let store = MemoryDedupe::default();
        for i in 0..600 {
            store
                .record("g", &i.to_string(), Duration::from_secs(1))
                .await
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 0..500 {
            store
                .record("h", &i.to_string(), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(lock(&store.records).expires.len(), 500);
    }
}
