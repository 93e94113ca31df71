use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "multi:{a}{b}")]
struct Pair {
    a: String,
    b: String,
}

fn main() {}
