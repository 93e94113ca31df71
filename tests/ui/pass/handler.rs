use eventbus::{Envelope, Event, EventBus, Message, State};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
}

#[derive(Clone)]
struct Mailer;

#[eventbus::handler]
async fn send_welcome(
    event: UserCreated,
    State(_mailer): State<Mailer>,
    _bus: EventBus,
) -> Result<(), std::io::Error> {
    let _ = event.user_id;
    Ok(())
}

#[eventbus::handler]
async fn audit(event: Envelope<UserCreated>) -> anyhow::Result<()> {
    let _ = event.id();
    Ok(())
}

#[eventbus::handler]
async fn everything(_event: Envelope<serde_json::Value>) {}

#[eventbus::handler]
async fn raw(_message: Message) {}

fn main() {
    // The fns are still handlers, and still plain fns.
    let _builder = EventBus::builder()
        .state(Mailer)
        .handler(send_welcome)
        .handler(audit);
    let _ = (everything, raw);
}
