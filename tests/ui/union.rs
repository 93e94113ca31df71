use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Event)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
