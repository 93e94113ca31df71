use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct UserId(u64);

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "user:{user_id}")]
struct Notification {
    user_id: UserId,
    text: String,
}

fn main() {}
