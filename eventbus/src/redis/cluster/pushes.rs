//! The pushes of the cluster subscriber's connection: messages to the bus, and the pushes
//! that mean a subscription was lost (a node's connection closed, or a node dropped a sharded
//! subscription because its slot moved), which the subscriber heals.

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};

use crate::redis::pubsub::names::Names;
use crate::transport::{Inbound, Message};

/// The bytes of a string value, taken without a copy where it is a bulk string.
fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

/// What a push that is no message says about the subscriptions.
pub(crate) enum Lost {
    /// The connection to a node closed.
    Node,
    /// A node dropped the sharded subscription to this channel (unsolicited when the
    /// channel is still held: its slot moved to another node).
    Sharded(String),
}

/// Hands a message push to the bus; returns what any other push says was lost.
pub(crate) fn handle(inbound: &dyn Inbound, push: PushInfo, names: &mut Names) -> Option<Lost> {
    let mut d = push.data.into_iter().map(bytes);
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            if let (Some(Some(c)), Some(Some(p))) = (d.next(), d.next()) {
                let channel = names.get_bytes(&c);
                inbound.message(Message::new(channel, None, p));
            }
            None
        }
        PushKind::PMessage => {
            if let (Some(Some(pat)), Some(Some(c)), Some(Some(p))) = (d.next(), d.next(), d.next())
            {
                let (pattern, channel) = (names.get_bytes(&pat), names.get_bytes(&c));
                inbound.message(Message::new(channel, Some(pattern), p));
            }
            None
        }
        PushKind::Disconnection => Some(Lost::Node),
        PushKind::SUnsubscribe => match d.next() {
            Some(Some(c)) => Some(Lost::Sharded(String::from_utf8_lossy(&c).into_owned())),
            _ => None,
        },
        _ => None,
    }
}
