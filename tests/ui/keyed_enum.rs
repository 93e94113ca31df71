use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
#[event(channel = "payment:{id}")]
enum PaymentEvent {
    Authorized { id: u64 },
    Declined { id: u64 },
}

fn main() {}
