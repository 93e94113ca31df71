use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "events:user.[ab]")]
struct UserCreated {
    user_id: u64,
}

fn main() {}
