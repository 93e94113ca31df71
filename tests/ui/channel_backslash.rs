use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = r"users\created")]
struct UserCreated {
    id: u64,
}

fn main() {}
