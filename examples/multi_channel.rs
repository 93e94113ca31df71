//! One subscriber on several raw channels: `news`, `sports` and `weather` carry plain text, not
//! event envelopes, as a shell script or another service might publish them.
//!
//! A single handler takes the raw [`Message`] and listens on all three channels; a publisher
//! sends two headlines to each with `publish_raw`. The example ends once all six arrived.
//! While it runs you can add your own: `redis-cli PUBLISH news "hello"`.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example multi_channel            # REDIS_URL=redis://host:port to use another server
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use eventbus::{EventBus, HandlerOptions, Message, Topic};
use eventbus_suite::connect;
use tokio::sync::mpsc;

const CHANNELS: [&str; 3] = ["news", "sports", "weather"];

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String)>();

    // One handler, three topics: `topic` can be given more than once.
    let options = CHANNELS
        .iter()
        .fold(HandlerOptions::new().name("headlines"), |o, c| {
            o.topic(Topic::channel(*c))
        });
    let subscriber = connect(
        EventBus::builder()
            .service("reader")
            .handler_with(options, move |message: Message| {
                let tx = tx.clone();
                async move {
                    let text = message.text().unwrap_or("<not UTF-8>").to_owned();
                    let _ = tx.send((message.channel.to_string(), text));
                }
            }),
        &url,
    )
    .await?;
    println!("subscribed to {}", CHANNELS.join(", "));

    let publisher = connect(EventBus::builder().service("newsroom"), &url).await?;
    let headlines = [
        ("news", "Parliament passes the budget"),
        ("sports", "Home team wins 3-1"),
        ("weather", "Sunny, 24 degrees"),
        ("news", "New bridge opens downtown"),
        ("sports", "Marathon record broken"),
        ("weather", "Storm warning for the coast"),
    ];
    for (channel, text) in headlines {
        publisher.publish_raw(channel, text).await?;
    }

    let mut per_channel = [0usize; CHANNELS.len()];
    for _ in 0..headlines.len() {
        let (channel, text) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("a headline did not arrive within 10 s")?
            .context("the subscriber stopped")?;
        if let Some(i) = CHANNELS.iter().position(|c| *c == channel) {
            per_channel[i] += 1;
        }
        println!("[{channel:>7}] {text}");
    }
    for (channel, n) in CHANNELS.iter().zip(per_channel) {
        println!("{channel}: {n} message(s)");
    }
    println!(
        "received {} messages on {} channels",
        headlines.len(),
        CHANNELS.len()
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
