use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct UserCreated {
    #[event(name = "id")]
    user_id: u64,
}

fn main() {}
