use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "user:{userid}:notifications")]
struct Notification {
    user_id: u64,
    text: String,
}

fn main() {}
