use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct UserCreated<'a> {
    name: &'a str,
}

fn main() {}
