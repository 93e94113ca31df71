//! Many publishes or appends at once: pipelines of up to [`CHUNK`] commands, a few in flight,
//! each one write and one read.

use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use super::Shared;
use super::stream_reply::ENVELOPE_FIELD;
use crate::transport::{ErrorKind, TransportError};

/// The most commands in one pipeline.
const CHUNK: usize = 512;
/// The most pipelines of one batch awaiting their replies at once.
const IN_FLIGHT: usize = 4;

/// Runs `send` on every chunk of `items`, [`IN_FLIGHT`] at a time, and joins the replies in
/// order; stops at the first error.
async fn chunked<'a, T, R, F, Fut>(items: &'a [T], send: F) -> Result<Vec<R>, TransportError>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: Future<Output = Result<Vec<R>, TransportError>>,
{
    let mut chunks = items.chunks(CHUNK);
    let mut sending = FuturesOrdered::new();
    let mut out = Vec::with_capacity(items.len());
    loop {
        while sending.len() < IN_FLIGHT {
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

/// `PUBLISH` of every message, pipelined; the receivers of each, in order.
pub(crate) async fn publish_many(
    shared: &Shared,
    messages: &[(String, Bytes)],
) -> Result<Vec<u64>, TransportError> {
    chunked(messages, |chunk| publish_chunk(shared, chunk)).await
}

async fn publish_chunk(
    shared: &Shared,
    chunk: &[(String, Bytes)],
) -> Result<Vec<u64>, TransportError> {
    let what = "publishing a batch";
    let mut pipe = redis::pipe();
    for (channel, payload) in chunk {
        pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref());
    }
    let wait = shared.options.publish_deadline;
    let replies: Vec<u64> = shared.pipeline(what, &pipe, wait).await?;
    checked(shared, what, chunk.len(), replies)
}

/// `XADD` of every entry (trimmed as single appends are), pipelined; the entry ids, in order.
pub(crate) async fn append_many(
    shared: &Shared,
    entries: &[(String, Bytes)],
) -> Result<Vec<String>, TransportError> {
    chunked(entries, |chunk| append_chunk(shared, chunk)).await
}

async fn append_chunk(
    shared: &Shared,
    chunk: &[(String, Bytes)],
) -> Result<Vec<String>, TransportError> {
    let what = "appending a batch";
    let trim = shared.options.stream_retention.args(SystemTime::now());
    let mut pipe = redis::pipe();
    for (stream, payload) in chunk {
        pipe.cmd("XADD").arg(stream).arg(&trim);
        pipe.arg("*").arg(ENVELOPE_FIELD).arg(payload.as_ref());
    }
    let wait = shared.options.publish_deadline;
    let replies: Vec<String> = shared.pipeline(what, &pipe, wait).await?;
    checked(shared, what, chunk.len(), replies)
}
