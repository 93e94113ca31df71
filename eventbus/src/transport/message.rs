//! One message as a transport delivers it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::ack::Ack;
use crate::Topic;

/// One message as it arrived on a subscribed topic.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published on.
    pub channel: Arc<str>,
    /// The pattern that matched, when it arrived through a pattern subscription.
    pub pattern: Option<Arc<str>>,
    /// The payload, as published.
    pub payload: Bytes,
    /// For a message of an at-least-once transport: its entry, delivery count and the handle
    /// that acknowledges it. `None` for pub/sub.
    pub ack: Option<Ack>,
}

impl Message {
    /// A message as a pub/sub transport delivers it: no acknowledgement.
    pub fn new(channel: Arc<str>, pattern: Option<Arc<str>>, payload: Bytes) -> Self {
        Message {
            channel,
            pattern,
            payload,
            ack: None,
        }
    }
}

impl Message {
    /// The payload as UTF-8 text, or `None` when it is not valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The topic this message was delivered through.
    pub fn topic(&self) -> Topic {
        match &self.pattern {
            Some(p) => Topic::Pattern(p.to_string()),
            None => Topic::Channel(self.channel.to_string()),
        }
    }

    /// The first bytes of the payload, for error reports (lossy UTF-8, at most 64 bytes).
    pub fn excerpt(&self) -> String {
        excerpt(&self.payload)
    }
}

pub(crate) fn excerpt(payload: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &payload[..payload.len().min(MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if payload.len() > MAX {
        s.push('…');
    }
    s
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel)
            .field("pattern", &self.pattern)
            .field("payload", &excerpt(&self.payload))
            .field("len", &self.payload.len())
            .field("ack", &self.ack)
            .finish()
    }
}
