use eventbus::{Event, State};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
}

struct Mailer;

#[eventbus::handler]
async fn send_welcome(_event: UserCreated, _mailer: State<Mailer>) {}

fn main() {}
