use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "user:{user_id:notifications")]
struct Notification {
    user_id: u64,
    text: String,
}

fn main() {}
