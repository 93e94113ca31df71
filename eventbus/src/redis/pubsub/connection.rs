//! The subscriber's connection, whichever carries it: the bus's own (`socket.rs`) to a server
//! reached without TLS, redis-rs's pub/sub connection over TLS (the own connection does not
//! speak TLS).

use std::sync::Arc;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, RedisResult};
use tokio_util::task::TaskTracker;

use crate::redis::pubsub::names::Names;
use crate::redis::pubsub::socket::{self, Commands, Reading};
use crate::transport::{Inbound, Message};

/// The command side: subscription changes and `PING`; clones share the connection.
#[derive(Clone)]
pub(crate) enum Sink {
    Own(Commands),
    Redis(PubSubSink),
}

/// The reading side: messages go to the bus while it is driven (redis-rs's) or held (the
/// bus's own, read by a task of its own).
pub(crate) enum Source {
    Own(Reading),
    Redis(PubSubStream),
}

/// Opens a subscriber connection to the server `client` names.
pub(crate) async fn open(
    client: &Client,
    inbound: &Arc<dyn Inbound>,
    tasks: &TaskTracker,
) -> RedisResult<(Sink, Source)> {
    let info = client.get_connection_info();
    if let Some((commands, reading)) = socket::open(info, inbound.clone(), tasks).await? {
        return Ok((Sink::Own(commands), Source::Own(reading)));
    }
    let (sink, stream) = client.get_async_pubsub().await?.split();
    Ok((Sink::Redis(sink), Source::Redis(stream)))
}

impl Sink {
    /// `SUBSCRIBE`, confirmed for every channel.
    pub(crate) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Sink::Own(c) => c.send("SUBSCRIBE", channels, channels.len()).await,
            Sink::Redis(s) => s.subscribe(channels).await,
        }
    }

    /// `PSUBSCRIBE`, confirmed for every pattern.
    pub(crate) async fn psubscribe(&mut self, patterns: &[String]) -> RedisResult<()> {
        match self {
            Sink::Own(c) => c.send("PSUBSCRIBE", patterns, patterns.len()).await,
            Sink::Redis(s) => s.psubscribe(patterns).await,
        }
    }

    /// `UNSUBSCRIBE`, confirmed for every channel.
    pub(crate) async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Sink::Own(c) => c.send("UNSUBSCRIBE", channels, channels.len()).await,
            Sink::Redis(s) => s.unsubscribe(channels).await,
        }
    }

    /// `PUNSUBSCRIBE`, confirmed for every pattern.
    pub(crate) async fn punsubscribe(&mut self, patterns: &[String]) -> RedisResult<()> {
        match self {
            Sink::Own(c) => c.send("PUNSUBSCRIBE", patterns, patterns.len()).await,
            Sink::Redis(s) => s.punsubscribe(patterns).await,
        }
    }

    /// `PING`, answered.
    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Sink::Own(c) => c.send("PING", &[], 1).await,
            Sink::Redis(s) => s.ping::<redis::Value>().await.map(drop),
        }
    }
}

impl Source {
    /// Hands every message to `inbound` until the connection ends; why it did.
    pub(crate) async fn run(self, inbound: &dyn Inbound) -> String {
        match self {
            Source::Own(mut reading) => reading.ended().await,
            Source::Redis(mut stream) => {
                let mut names = Names::default();
                while let Some(msg) = stream.next().await {
                    inbound.message(to_message(&msg, &mut names));
                }
                "the connection was closed".to_owned()
            }
        }
    }
}

fn to_message(msg: &redis::Msg, names: &mut Names) -> Message {
    let channel = match msg.get_channel_name() {
        // Not UTF-8: read what it is.
        "?" => names.get_bytes(&msg.get_channel::<Vec<u8>>().unwrap_or_default()),
        name => names.get(name),
    };
    let pattern = if msg.from_pattern() {
        let bytes = msg.get_pattern::<Vec<u8>>().unwrap_or_default();
        Some(names.get_bytes(&bytes))
    } else {
        None
    };
    Message::new(
        channel,
        pattern,
        bytes::Bytes::copy_from_slice(msg.get_payload_bytes()),
    )
}
