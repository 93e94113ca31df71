use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(name = "")]
struct UserCreated {
    user_id: u64,
}

fn main() {}
