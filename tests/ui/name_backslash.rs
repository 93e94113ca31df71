use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(name = "user\\created")]
struct UserCreated {
    id: u64,
}

fn main() {}
