//! Remembering which events a consumer group has handled, for opt-in de-duplication
//! ([`DurableOptions::dedupe`](crate::DurableOptions::dedupe)).

use std::time::Duration;

use super::{BoxFuture, TransportError};

/// Where a transport remembers handled event ids, per scope (a consumer group), for a window.
///
/// The bus asks [`seen`](DedupeStore::seen) before running a handler and calls
/// [`record`](DedupeStore::record) after the handler succeeded and before acknowledging, so a
/// redelivery of an event that was handled is skipped while the record lasts.
pub trait DedupeStore: Send + Sync + 'static {
    /// Whether `id` was recorded for `scope` and has not expired.
    fn seen<'a>(
        &'a self,
        scope: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>>;

    /// Records `id` as handled for `scope`, forgotten after `window`.
    fn record<'a>(
        &'a self,
        scope: &'a str,
        id: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>>;
}
