use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct Batch<T> {
    items: Vec<T>,
}

fn main() {}
