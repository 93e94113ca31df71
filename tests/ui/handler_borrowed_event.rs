use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
}

#[eventbus::handler]
async fn send_welcome(_event: &UserCreated) {}

fn main() {}
