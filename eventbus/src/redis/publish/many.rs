//! Many publishes or appends at once: pipelines of up to [`CHUNK`] commands, a few in flight,
//! each one write and one read. On a cluster a chunk's commands go as one pipeline per key
//! (to the node serving it), one chunk at a time, so each channel's or stream's commands keep
//! their order.

use std::collections::HashMap;
use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use redis::FromRedisValue;

use crate::redis::publish::encode::Command;
use crate::redis::shared::Shared;
use crate::transport::{ErrorKind, TransportError};

/// The most commands in one pipeline.
const CHUNK: usize = 512;
/// The most pipelines of one batch awaiting their replies at once (on a single server).
const IN_FLIGHT: usize = 4;

/// How many chunks may be on their way at once: one on a cluster, where order across chunks
/// holds only if each is answered before the next leaves.
fn in_flight(shared: &Shared) -> usize {
    if shared.target.cluster().is_some() {
        1
    } else {
        IN_FLIGHT
    }
}

/// Runs `send` on every chunk of `items`, `in_flight` at a time, and joins the replies in
/// order; stops at the first error.
async fn chunked<'a, T, R, F, Fut>(
    items: &'a [T],
    in_flight: usize,
    send: F,
) -> Result<Vec<R>, TransportError>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: Future<Output = Result<Vec<R>, TransportError>>,
{
    let mut chunks = items.chunks(CHUNK);
    let mut sending = FuturesOrdered::new();
    let mut out = Vec::with_capacity(items.len());
    loop {
        while sending.len() < in_flight {
            match chunks.next() {
                Some(chunk) => sending.push_back(send(chunk)),
                None => break,
            }
        }
        match sending.next().await {
            Some(replies) => out.extend(replies?),
            None => return Ok(out),
        }
    }
}

/// One pipeline's replies, checked for their number.
fn checked<T>(
    shared: &Shared,
    what: &str,
    sent: usize,
    replies: Vec<T>,
) -> Result<Vec<T>, TransportError> {
    if replies.len() == sent {
        return Ok(replies);
    }
    Err(TransportError::new(
        ErrorKind::Server,
        format!(
            "{what} failed: Redis at {} answered {} replies to {sent} commands",
            shared.target.addr,
            replies.len()
        ),
    ))
}

/// Sends the commands of a chunk: one pipeline on a single server; on a cluster one pipeline
/// per key (a key's commands go to one node, in order), all at once. The replies in order.
async fn send<R: FromRedisValue>(
    shared: &Shared,
    what: &str,
    cmds: Vec<Command<'_>>,
) -> Result<Vec<R>, TransportError> {
    let wait = shared.options.publish_deadline;
    if shared.target.cluster().is_none() {
        return send_pipeline(shared, what, &cmds, wait).await;
    }
    let mut by_key: HashMap<&str, (Vec<usize>, Vec<Command<'_>>)> = HashMap::new();
    for (i, cmd) in cmds.into_iter().enumerate() {
        let group = by_key.entry(cmd.key()).or_default();
        group.0.push(i);
        group.1.push(cmd);
    }
    let sends = by_key
        .values()
        .map(|(_, cmds)| send_pipeline::<R>(shared, what, cmds, wait));
    let replies = futures_util::future::try_join_all(sends).await?;
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None)
        .take(by_key.values().map(|g| g.0.len()).sum())
        .collect();
    for ((indices, _), replies) in by_key.into_values().zip(replies) {
        for (i, reply) in indices.into_iter().zip(replies) {
            out[i] = Some(reply);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// One pipeline of `cmds`, its replies checked for their number.
async fn send_pipeline<R: FromRedisValue>(
    shared: &Shared,
    what: &str,
    cmds: &[Command<'_>],
    wait: std::time::Duration,
) -> Result<Vec<R>, TransportError> {
    let replies: Vec<R> = shared.lane_send(what, cmds, wait).await?;
    checked(shared, what, cmds.len(), replies)
}

/// `PUBLISH` of every message (`SPUBLISH` when `sharded` on a cluster); the receivers of
/// each, in order.
pub(crate) async fn publish_many(
    shared: &Shared,
    messages: &[(String, Bytes)],
    sharded: bool,
) -> Result<Vec<u64>, TransportError> {
    let sharded = sharded && shared.target.cluster().is_some();
    chunked(messages, in_flight(shared), |chunk| {
        let cmds = chunk.iter().map(|(channel, payload)| Command::Publish {
            sharded,
            channel,
            payload,
        });
        send(shared, "publishing a batch", cmds.collect())
    })
    .await
}

/// `XADD` of every entry (trimmed as single appends are); the entry ids, in order.
pub(crate) async fn append_many(
    shared: &Shared,
    entries: &[(String, Bytes)],
) -> Result<Vec<String>, TransportError> {
    chunked(entries, in_flight(shared), |chunk| async move {
        let trim = shared.options.stream_retention.args(SystemTime::now());
        let cmds = chunk.iter().map(|(stream, payload)| Command::Append {
            stream,
            trim: &trim,
            payload,
        });
        send(shared, "appending a batch", cmds.collect()).await
    })
    .await
}
