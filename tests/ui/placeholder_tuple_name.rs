use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "room:{room}")]
struct ChatMessage(String, String);

fn main() {}
