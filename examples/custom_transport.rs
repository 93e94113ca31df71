//! A transport of your own, plugged into the bus with `EventBusBuilder::connect_with` and
//! checked by the conformance suite (`eventbus::conformance`, feature `conformance`).
//!
//! `BroadcastHub` is a small in-process pub/sub medium written only against the public
//! `eventbus::transport` contract, as a crate outside this repository would write it: channel
//! and pattern subscriptions, no acknowledgements, no reconnects. The example first carries
//! one event with it, then runs every behaviour of the suite on it and prints the report.
//!
//! ```text
//! cargo run --example custom_transport
//! ```
//!
//! In your transport's crate, enable the feature on the dev-dependency
//! (`eventbus = { version = "0.1", features = ["conformance"] }`) and call
//! `eventbus::conformance::run(...)` from a `#[tokio::test(flavor = "multi_thread")]`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use eventbus::transport::{BoxFuture, Capabilities, ErrorKind, Inbound, Transport, TransportError};
use eventbus::{
    ConnectError, ConnectionEvent, Event, EventBus, EventBusBuilder, Message, Topic, conformance,
};
use serde::{Deserialize, Serialize};

/// The shared medium: every transport connected to it, with the topics it holds.
#[derive(Debug, Default)]
struct BroadcastHub {
    members: Mutex<Vec<Arc<Member>>>,
}

/// One connected transport's side of the hub.
struct Member {
    inbound: Arc<dyn Inbound>,
    topics: Mutex<BTreeSet<Topic>>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl BroadcastHub {
    /// Connects a bus built by `builder` to this hub: the one call a user makes.
    async fn connect(self: &Arc<Self>, builder: EventBusBuilder) -> Result<EventBus, ConnectError> {
        let hub = self.clone();
        builder
            .connect_with(move |inbound: Arc<dyn Inbound>| async move {
                let transport: Arc<dyn Transport> = Arc::new(HubTransport::join(hub, inbound));
                Ok::<_, TransportError>(transport)
            })
            .await
    }
}

/// The transport of one bus on a [`BroadcastHub`].
#[derive(Debug)]
struct HubTransport {
    hub: Arc<BroadcastHub>,
    me: Arc<Member>,
    closed: AtomicBool,
}

/// Whether `channel` matches the glob `pattern`: `*` any run, `?` one character, `\` escapes
/// the next one. Enough for the patterns the bus subscribes (`events:order:*`); Redis also has
/// `[...]` classes.
fn glob_match(pattern: &str, channel: &str) -> bool {
    fn go(p: &[u8], c: &[u8]) -> bool {
        match p {
            [] => c.is_empty(),
            [b'*', rest @ ..] => (0..=c.len()).any(|skip| go(rest, &c[skip..])),
            [b'?', rest @ ..] => !c.is_empty() && go(rest, &c[1..]),
            [b'\\', x, rest @ ..] | [x, rest @ ..] => c.first() == Some(x) && go(rest, &c[1..]),
        }
    }
    go(pattern.as_bytes(), channel.as_bytes())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HubTransport {
    fn join(hub: Arc<BroadcastHub>, inbound: Arc<dyn Inbound>) -> Self {
        let me = Arc::new(Member {
            inbound,
            topics: Mutex::default(),
        });
        lock(&hub.members).push(me.clone());
        me.inbound
            .connection(ConnectionEvent::Connected { role: "subscriber" });
        HubTransport {
            hub,
            me,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::new(
                ErrorKind::Closed,
                "the hub transport is closed",
            ));
        }
        Ok(())
    }

    /// Hands `payload` to every subscription that matches `channel`, as Redis pub/sub does: a
    /// member subscribed by channel and by pattern gets it once for each. Returns how many.
    fn broadcast(&self, channel: &str, payload: Bytes) -> u64 {
        let members = lock(&self.hub.members).clone();
        let channel: Arc<str> = channel.into();
        let mut receivers = 0;
        for member in members {
            let topics = lock(&member.topics).clone();
            for topic in topics {
                let pattern = match topic {
                    Topic::Channel(c) if *c == *channel => None,
                    Topic::Pattern(p) if glob_match(&p, &channel) => Some(Arc::from(p)),
                    _ => continue,
                };
                let message = Message::new(channel.clone(), pattern, payload.clone());
                member.inbound.message(message);
                receivers += 1;
            }
        }
        receivers
    }
}

impl Transport for HubTransport {
    fn capabilities(&self) -> Capabilities {
        Capabilities::pubsub()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            Ok(self.broadcast(channel, payload))
        })
    }

    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            lock(&self.me.topics).extend(topics.iter().cloned());
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let mut held = lock(&self.me.topics);
            for topic in topics {
                held.remove(topic);
            }
            Ok(())
        })
    }

    fn ready(&self, _within: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        // Subscriptions take effect when `subscribe` returns: nothing to wait for.
        Box::pin(async move { self.check_open() })
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>> {
        Box::pin(async move { self.check_open().map(|()| Duration::ZERO) })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if !self.closed.swap(true, Ordering::AcqRel) {
                lock(&self.hub.members).retain(|m| !Arc::ptr_eq(m, &self.me));
                lock(&self.me.topics).clear();
            }
            Ok(())
        })
    }
}

#[derive(Debug, Serialize, Deserialize, Event)]
struct Greeting {
    text: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = Arc::new(BroadcastHub::default());

    // The transport carries events like any other.
    let (got, mut received) = tokio::sync::mpsc::unbounded_channel();
    let listener = hub
        .connect(EventBus::builder().handler(move |g: Greeting| {
            let got = got.clone();
            async move {
                let _ = got.send(g.text);
            }
        }))
        .await?;
    let speaker = hub.connect(EventBus::builder().service("speaker")).await?;
    let receipt = speaker
        .publish(Greeting {
            text: "hello over a transport of our own".into(),
        })
        .await?;
    let text = tokio::time::timeout(Duration::from_secs(5), received.recv()).await?;
    println!(
        "received {:?} ({} receiver)",
        text.unwrap_or_default(),
        receipt.receivers
    );
    listener.shutdown().await?;
    speaker.shutdown().await?;

    // The conformance suite: every behaviour the capabilities call for, on fresh buses.
    let report = conformance::run(move |builder: EventBusBuilder| {
        let hub = hub.clone();
        async move { hub.connect(builder).await }
    })
    .await;
    println!("{report}");
    report.assert_passed();
    Ok(())
}
