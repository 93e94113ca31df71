//! Keyed channels and patterns.
//!
//! `UserNotification` is a keyed event: `#[event(channel = "user:{user_id}:notifications")]`
//! publishes each value on its user's own channel (`user:42:notifications`). A handler taking
//! the event listens on every user's channel through the pattern `user:*:notifications`;
//! `handler_on(Topic::keyed::<UserNotification>(&[&42]), ..)` listens on user 42's only.
//! A third handler takes untyped envelopes on the pattern `system:*` and so sees every event
//! on a `system:` channel, whatever its type.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example patterns                 # REDIS_URL=redis://host:port to use another server
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use eventbus::{Envelope, Event, EventBus, Topic};
use eventbus_suite::connect;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A notification for one user, on that user's channel.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(channel = "user:{user_id}:notifications")]
struct UserNotification {
    user_id: u64,
    text: String,
}

/// An alert, on `system:alerts`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(channel = "system:alerts")]
struct SystemAlert {
    severity: String,
    message: String,
}

/// A deployment, on `system:deploys`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(channel = "system:deploys")]
struct Deployed {
    service: String,
    version: String,
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let (all, only42, system) = (tx.clone(), tx.clone(), tx);

    let subscriber = connect(
        EventBus::builder()
            .service("patterns-demo")
            // Every user's notifications: the event's own topic is the pattern user:*:notifications.
            .handler(move |n: UserNotification| {
                let all = all.clone();
                async move {
                    let _ = all.send(format!("[all users] user {}: {}", n.user_id, n.text));
                }
            })
            // User 42's only: the keyed channel user:42:notifications.
            .handler_on(
                Topic::keyed::<UserNotification>(&[&42]),
                move |n: UserNotification| {
                    let only42 = only42.clone();
                    async move {
                        let _ = only42.send(format!("[user 42 only] {}", n.text));
                    }
                },
            )
            // Anything on a system: channel, untyped.
            .handler_on(
                Topic::pattern("system:*"),
                move |e: Envelope<serde_json::Value>| {
                    let system = system.clone();
                    async move {
                        let _ = system.send(format!("[system:*] {}: {}", e.event_type(), e.data()));
                    }
                },
            ),
        &url,
    )
    .await?;
    for topic in subscriber.topics() {
        println!("listening on {topic}");
    }

    let publisher = connect(EventBus::builder().service("platform"), &url).await?;
    for (user_id, text) in [(7, "your report is ready"), (42, "you have a new follower")] {
        let receipt = publisher
            .publish(UserNotification {
                user_id,
                text: text.into(),
            })
            .await?;
        println!("published on {}", receipt.channel);
    }
    publisher
        .publish(SystemAlert {
            severity: "warning".into(),
            message: "disk 91% full on db-2".into(),
        })
        .await?;
    publisher
        .publish(Deployed {
            service: "checkout".into(),
            version: "2.4.1".into(),
        })
        .await?;

    // user 7: one delivery; user 42: two (pattern and keyed); system: two.
    let mut lines = Vec::new();
    for _ in 0..5 {
        let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("an event did not arrive within 10 s")?
            .context("the subscriber stopped")?;
        lines.push(line);
    }
    lines.sort();
    for line in &lines {
        println!("{line}");
    }
    println!(
        "5 deliveries: 4 through the patterns user:*:notifications and system:*, \
         1 through the keyed channel user:42:notifications"
    );

    publisher.shutdown().await?;
    subscriber.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
