use eventbus::Event;
use serde::{Deserialize, Serialize};

/// Every mistake is reported in one pass, and the type still implements `Event` (with empty
/// values) so `main` adds no "trait not implemented" error.
#[derive(Serialize, Deserialize, Event)]
#[event(nmae = "order", version = 0)]
#[event(name = "order placed", channel = "orders:{order}")]
#[event(version = 2)]
struct OrderPlaced {
    order_id: String,
}

fn publish<E: Event>(_event: E) -> &'static str {
    E::TYPE
}

fn main() {
    publish(OrderPlaced {
        order_id: String::new(),
    });
}
