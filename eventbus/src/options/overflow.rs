//! What a full handler queue does.

/// What a full handler queue does with one more event. Either way the drop is counted in
/// the handler's metrics and reported to the error hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the event that does not fit (the queue keeps the oldest events).
    #[default]
    DropNewest,
    /// Drop the oldest queued event to make room (the queue keeps the newest events).
    DropOldest,
}
