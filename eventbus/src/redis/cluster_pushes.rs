//! The push reader of the cluster subscriber: messages to the bus, and the pushes that mean
//! a subscription was lost (a node's connection closed, or a node dropped a sharded
//! subscription because its slot moved) to the subscriber's healing.

use std::sync::Arc;

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};

use super::Shared;
use super::cluster_slots::slot_of;
use super::cluster_subscriber::{ClusterSubscriber, ROLE};
use crate::transport::{ConnectionEvent, Message};

/// Hands the pushes of the subscriber connection to the bus until the transport closes.
pub(super) async fn pump(
    shared: Arc<Shared>,
    mut pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
) {
    loop {
        let push = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            p = pushes.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        handle(&shared, push);
    }
}

fn handle(shared: &Arc<Shared>, push: PushInfo) {
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(Bytes::copy_from_slice(b)),
        Some(Value::SimpleString(s)) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    };
    let name = |b: Bytes| -> Arc<str> { Arc::from(String::from_utf8_lossy(&b)) };
    let d = &push.data;
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            if let (Some(c), Some(p)) = (text(d.first()), text(d.get(1))) {
                shared.inbound.message(Message::new(name(c), None, p));
            }
        }
        PushKind::PMessage => {
            if let (Some(pat), Some(c), Some(p)) = (text(d.first()), text(d.get(1)), text(d.get(2)))
            {
                shared
                    .inbound
                    .message(Message::new(name(c), Some(name(pat)), p));
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
            let Some(c) = text(d.first()) else { return };
            let channel = String::from_utf8_lossy(&c).into_owned();
            let sub = &shared.cluster_subscriber;
            if sub.dropped(&channel) {
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
