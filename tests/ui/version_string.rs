use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(version = "2")]
struct UserCreated {
    user_id: u64,
}

fn main() {}
