use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(durable = true)]
struct OrderPlaced {
    order_id: u64,
}

fn main() {}
