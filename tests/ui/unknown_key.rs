use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(nmae = "user_created")]
struct UserCreated {
    user_id: u64,
}

fn main() {}
