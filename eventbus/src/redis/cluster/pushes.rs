//! The push reader of the cluster subscriber: messages to the bus, and the pushes that mean
//! a subscription was lost (a node's connection closed, or a node dropped a sharded
//! subscription because its slot moved) to the subscriber's healing.

use std::sync::Arc;

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};

use crate::redis::Shared;
use crate::redis::cluster::slots::slot_of;
use crate::redis::cluster::subscriber::{ClusterSubscriber, ROLE};
use crate::redis::pubsub::names::Names;
use crate::transport::{ConnectionEvent, Message};

/// Hands the pushes of the subscriber connection to the bus until the transport closes.
pub(super) async fn pump(
    shared: Arc<Shared>,
    mut pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
) {
    let mut names = Names::default();
    loop {
        let push = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            p = pushes.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        handle(&shared, push, &mut names);
    }
}

/// The bytes of a string value, taken without a copy where it is a bulk string.
fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

fn handle(shared: &Arc<Shared>, push: PushInfo, names: &mut Names) {
    let mut d = push.data.into_iter().map(bytes);
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            if let (Some(Some(c)), Some(Some(p))) = (d.next(), d.next()) {
                let channel = names.get_bytes(&c);
                shared.inbound.message(Message::new(channel, None, p));
            }
        }
        PushKind::PMessage => {
            if let (Some(Some(pat)), Some(Some(c)), Some(Some(p))) = (d.next(), d.next(), d.next())
            {
                let (pattern, channel) = (names.get_bytes(&pat), names.get_bytes(&c));
                shared
                    .inbound
                    .message(Message::new(channel, Some(pattern), p));
            }
        }
        PushKind::Disconnection => {
            shared.inbound.connection(ConnectionEvent::Disconnected {
                role: ROLE,
                cause: "the connection to a cluster node was lost".to_owned(),
            });
            ClusterSubscriber::heal(shared);
        }
        PushKind::SUnsubscribe => {
            // Unsolicited when the channel is still held: its slot moved to another node.
            let Some(Some(c)) = d.next() else { return };
            let channel = String::from_utf8_lossy(&c).into_owned();
            let sub = &shared.cluster_subscriber;
            if sub.holds_channel(&channel) {
                let node = sub.server_of(&channel);
                let node = node.as_deref().unwrap_or("the node serving it");
                shared.inbound.connection(ConnectionEvent::Disconnected {
                    role: ROLE,
                    cause: format!(
                        "cluster node {node} dropped the sharded subscription to {channel} \
                         (its slot {} moved)",
                        slot_of(&channel)
                    ),
                });
                ClusterSubscriber::heal(shared);
            }
        }
        _ => {}
    }
}
