use std::rc::Rc;

use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
}

async fn lookup(_id: u64) {}

#[eventbus::handler]
async fn send_welcome(event: UserCreated) {
    let seen = Rc::new(event.user_id);
    lookup(*seen).await;
    drop(seen);
}

fn main() {}
