use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(
    name = "notification",
    version = 3,
    channel = "user:{user_id}:notifications"
)]
struct Notification {
    user_id: u64,
    text: String,
}

fn main() {
    let n = Notification {
        user_id: 42,
        text: String::new(),
    };
    assert_eq!(n.channel(), "user:42:notifications");
    assert_eq!(Notification::PATTERN, Some("user:*:notifications"));
}
