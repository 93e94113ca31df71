use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "orders:{region}", durable)]
struct OrderPlaced {
    region: String,
}

fn main() {}
