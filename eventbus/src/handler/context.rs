//! Extra handler arguments, made from the run's context: shared state and the bus.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// What the bus hands to a run, from which extra handler arguments are made.
///
/// Implement [`FromContext`] for a type of your own to make it a handler argument; the
/// context gives the shared state and the bus.
#[derive(Clone)]
pub struct HandlerContext {
    /// The bus, held weakly so that handlers never keep it alive; its type is known only to
    /// the bus module, which makes the `EventBus` argument from it.
    pub(crate) bus: std::sync::Weak<dyn Any + Send + Sync>,
    pub(crate) state: Arc<StateMap>,
}

impl HandlerContext {
    /// A copy of the shared state of type `S` given to the builder with `.state(value)`.
    pub fn state<S: Clone + Send + Sync + 'static>(&self) -> Option<S> {
        self.state
            .values
            .get(&TypeId::of::<S>())
            .and_then(|(v, _)| v.downcast_ref::<S>())
            .cloned()
    }
}

impl std::fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerContext").finish_non_exhaustive()
    }
}

/// Shared state registered with [`EventBusBuilder::state`](crate::EventBusBuilder::state).
#[derive(Default)]
pub(crate) struct StateMap {
    pub(crate) values: HashMap<TypeId, (Box<dyn Any + Send + Sync>, &'static str)>,
}

/// A handler argument made from the run's context.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an extra argument of a handler",
    note = "after what it receives, a handler may take up to three of `State<S>` (with `S: Clone + Send + Sync + 'static`, given to the builder with `.state(value)`), `EventBus`, `DeliveryInfo` and `Tx` (feature `postgres`)"
)]
pub trait FromContext: Sized + Send + 'static {
    /// Whether the argument is a database transaction the bus opens for each run.
    #[doc(hidden)]
    const TRANSACTION: bool = false;

    /// Makes the argument, or says why not.
    fn from_context(ctx: &HandlerContext) -> Result<Self, String>;

    /// Checks at start-up that the argument can be made; returns the problem, if any. The
    /// default accepts everything.
    fn check(state: &StateMapView<'_>) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// Which state types the builder was given, for start-up checks in [`FromContext::check`].
///
/// Only the bus makes one; it is public (and exported next to [`FromContext`]) because an
/// extractor of your own names it when it overrides `check`.
#[derive(Debug)]
pub struct StateMapView<'a>(pub(crate) &'a [TypeId]);

impl StateMapView<'_> {
    /// Whether state of type `S` was given to the builder.
    pub fn contains<S: 'static>(&self) -> bool {
        self.0.contains(&TypeId::of::<S>())
    }
}

/// Shared state, given to the builder with `.state(value)` and taken by handlers as an argument.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use eventbus::{Event, EventBus, State};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, Event)] struct UserCreated { user_id: u64 }
///
/// #[derive(Clone, Default)]
/// struct Counter(Arc<AtomicU64>);
///
/// async fn count(_: UserCreated, State(counter): State<Counter>) {
///     counter.0.fetch_add(1, Ordering::Relaxed);
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = EventBus::builder().state(Counter::default()).handler(count).connect("memory://").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromContext for State<S> {
    fn from_context(ctx: &HandlerContext) -> Result<Self, String> {
        ctx.state::<S>()
            .map(State)
            .ok_or_else(|| missing_state::<S>())
    }

    fn check(state: &StateMapView<'_>) -> Result<(), String> {
        if state.contains::<S>() {
            Ok(())
        } else {
            Err(missing_state::<S>())
        }
    }
}

fn missing_state<S>() -> String {
    format!(
        "no state of type `{}`: give it to the builder with `.state(value)`",
        std::any::type_name::<S>()
    )
}
