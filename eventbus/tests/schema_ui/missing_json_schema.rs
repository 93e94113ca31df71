use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(name = "order_placed")]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
