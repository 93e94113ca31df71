use eventbus::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
}

#[derive(Debug)]
struct MailError;

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mail failed")
    }
}

impl std::error::Error for MailError {}

#[eventbus::handler]
async fn send_welcome(event: UserCreated) -> Result<u32, MailError> {
    Ok(event.user_id as u32)
}

fn main() {}
