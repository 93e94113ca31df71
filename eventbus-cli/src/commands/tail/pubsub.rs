//! `tail` on pub/sub: a bus with one raw-message handler per topic.

use std::time::Duration;

use eventbus::{EventBus, Message};
use tokio::sync::mpsc::UnboundedSender;

use super::topics::topics;
use crate::exit::{CliError, Code, chain};
use crate::incoming::Incoming;
use crate::session::{Session, connect};

/// How long the server may take to confirm the subscriptions.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Subscribes to the topics the arguments name; every message goes to `tx`.
pub(super) async fn subscribe(
    url: &str,
    args: &[String],
    tx: UnboundedSender<Result<Incoming, CliError>>,
) -> Result<Session, CliError> {
    let mut builder = EventBus::builder();
    for topic in topics(args) {
        let tx = tx.clone();
        builder = builder.handler_on(topic, move |message: Message| {
            let _ = tx.send(Ok(incoming(message)));
            async {}
        });
    }
    let session = connect(url, builder).await?;
    if let Err(e) = session.bus.ready(READY_WITHIN).await {
        let why = format!("subscribing on {} failed: {}", session.shown_url, chain(&e));
        session.close().await;
        return Err(CliError::new(Code::Connect, why));
    }
    Ok(session)
}

fn incoming(message: Message) -> Incoming {
    Incoming {
        channel: message.channel.to_string(),
        entry_id: None,
        payload: message.payload,
        unreadable: None,
    }
}
