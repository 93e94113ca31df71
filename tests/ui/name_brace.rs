use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(name = "user_{id}")]
struct UserCreated {
    id: u64,
}

fn main() {}
