//! A terminal chat: rooms are keyed channels, joins and leaves are announced.
//!
//! `ChatMessage` is keyed by room (`#[event(channel = "chat:{room}")]`), so each room is its own
//! channel (`chat:general`) and a client subscribes only to the room it is in, switching rooms
//! with a subscription made after start-up (`bus.subscribe_with`). Lines read from stdin are
//! said in the current room; `/join ROOM` moves to another room, `/quit` (or end of input)
//! leaves. Each line you say is shown once the server has sent it back, as other members see it.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example chat -- --user ada --room general      # in one terminal
//! cargo run --example chat -- --user grace --room general    # in another
//! printf 'hello\n/join random\nhi\n' | cargo run --example chat -- --user bot
//! ```
//!
//! `REDIS_URL=redis://host:port` uses another server.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use eventbus::{Envelope, Event, EventBus, HandlerOptions, Subscription, Topic};
use eventbus_suite::connect;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

/// What happened in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Join,
    Leave,
    Say,
}

/// A line in a room, published on the room's channel `chat:<room>`.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(channel = "chat:{room}")]
struct ChatMessage {
    room: String,
    user: String,
    kind: Kind,
    text: String,
}

/// The ids of the messages received so far, to wait for our own lines to come back.
#[derive(Default)]
struct Echoes {
    ids: Mutex<HashSet<String>>,
    arrived: Notify,
}

impl Echoes {
    fn record(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned());
        self.arrived.notify_waiters();
    }

    /// Waits (at most 2 s) until the message `id` was received.
    async fn wait_for(&self, id: &str) -> bool {
        let wait = async {
            loop {
                let notified = self.arrived.notified();
                if self
                    .ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(id)
                {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .is_ok()
    }
}

fn show(message: &ChatMessage) -> String {
    let ChatMessage {
        room, user, text, ..
    } = message;
    match message.kind {
        Kind::Join => format!("[{room}] * {user} joined"),
        Kind::Leave => format!("[{room}] * {user} left"),
        Kind::Say => format!("[{room}] {user}: {text}"),
    }
}

/// One member of the chat, in one room at a time.
struct Member {
    bus: EventBus,
    user: String,
    room: String,
    echoes: Arc<Echoes>,
    subscription: Option<Subscription>,
}

impl Member {
    async fn enter(&mut self, room: String) -> anyhow::Result<()> {
        let echoes = self.echoes.clone();
        let topic = Topic::try_keyed::<ChatMessage>(&[&room])
            .with_context(|| format!("cannot join #{room}"))?;
        let subscription = self
            .bus
            .subscribe_with(
                HandlerOptions::new().name("room").topic(topic),
                move |m: Envelope<ChatMessage>| {
                    let echoes = echoes.clone();
                    async move {
                        println!("{}", show(m.data()));
                        echoes.record(m.id());
                    }
                },
            )
            .await
            .with_context(|| format!("could not join #{room}"))?;
        self.subscription = Some(subscription);
        self.room = room;
        self.send(Kind::Join, "").await
    }

    async fn leave(&mut self) -> anyhow::Result<()> {
        self.send(Kind::Leave, "").await?;
        if let Some(subscription) = self.subscription.take() {
            subscription.unsubscribe().await?;
        }
        Ok(())
    }

    /// Says something in the current room and waits until it comes back from the server.
    async fn send(&self, kind: Kind, text: &str) -> anyhow::Result<()> {
        let receipt = self
            .bus
            .publish(ChatMessage {
                room: self.room.clone(),
                user: self.user.clone(),
                kind,
                text: text.to_owned(),
            })
            .await?;
        if !self.echoes.wait_for(&receipt.id).await {
            eprintln!("(not echoed by the server within 2 s)");
        }
        Ok(())
    }
}

/// The lines of stdin, read on a plain thread: unlike `tokio::io::stdin`, a read still
/// waiting for the terminal there does not hold up the exit after `/quit`.
fn stdin_lines() -> mpsc::UnboundedReceiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let user = arg(&args, "--user")
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "guest".to_owned());
    let room = arg(&args, "--room").unwrap_or_else(|| "general".to_owned());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());

    let bus = connect(
        EventBus::builder()
            .service(format!("chat-{user}"))
            .on_error(|failure| eprintln!("chat: {failure}")),
        &url,
    )
    .await?;
    let mut me = Member {
        bus: bus.clone(),
        user,
        room: String::new(),
        echoes: Arc::default(),
        subscription: None,
    };
    println!("joining #{room} as {}; /join ROOM, /quit", me.user);
    me.enter(room).await?;

    let mut lines = stdin_lines();
    loop {
        let line = tokio::select! {
            line = lines.recv() => line.transpose()?,
            () = eventbus::shutdown_signal() => None,
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            break;
        }
        if let Some(next) = line.strip_prefix("/join ") {
            let next = next.trim();
            if next.is_empty()
                || next.contains(char::is_whitespace)
                || next.contains(['*', '?', '[', ']'])
            {
                eprintln!("a room name is one word without * ? [ ]");
                continue;
            }
            me.leave().await?;
            me.enter(next.to_owned()).await?;
            continue;
        }
        me.send(Kind::Say, line).await?;
    }
    me.leave().await?;
    bus.shutdown().await?;
    println!("bye");
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
