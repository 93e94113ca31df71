//! The publisher: one multiplexed connection for `PUBLISH` and every other command, so
//! concurrent commands pipeline on one socket (on a cluster, one cluster connection, where a
//! sharded publish is a `SPUBLISH`). A supervisor task pings it and replaces it when
//! it is lost.
//!
//! Publishes go through a batcher: one task takes every publish queued while earlier batches
//! were on the wire and sends them as one pipeline (one write, one reply), with a few batches
//! in flight at once. A lone publish goes out at once as a batch of one.
//!
//! The queue is bounded by [`max_in_flight`](RedisOptions::max_in_flight): a publish takes one
//! of its permits before it is queued and gives it back when it is answered, so queued and
//! unanswered publishes (and other commands) together never exceed it. A publish that finds
//! no permit waits for one up to its deadline: the caller feels the backpressure.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::redis::conn::connection::Conn;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;

use crate::redis::RedisOptions;
use crate::redis::conn::link::{self, Link};
use crate::redis::conn::open::{Lanes, open};
use crate::redis::publish::many::publish_cmd;
use crate::redis::shared::Shared;
use crate::transport::{ConnectionEvent, ErrorKind, TransportError};

pub(crate) const ROLE: &str = "publisher";

/// Keeps the publisher connected: watches for a reported failure or an unanswered watchdog
/// `PING`, then reconnects with backoff.
pub(crate) async fn supervise(shared: Arc<Shared>) {
    let link = &shared.commands;
    let mut epoch = match &*link.borrow() {
        Link::Up { epoch, .. } => *epoch,
        _ => return,
    };
    loop {
        let Some(cause) = connected(&shared, epoch).await else {
            return;
        };
        shared.inbound.connection(ConnectionEvent::Disconnected {
            role: ROLE,
            cause: cause.to_string(),
        });
        let opened = shared
            .reconnect(ROLE, link, || {
                open(
                    &shared.target,
                    &shared.options,
                    Lanes::WithLane(shared.tasks()),
                )
            })
            .await;
        let Some((conn, attempts)) = opened else {
            return;
        };
        epoch += 1;
        link::set(link, Link::Up { conn, epoch });
        shared.inbound.connection(ConnectionEvent::Reconnected {
            role: ROLE,
            attempts,
        });
    }
}

/// Runs while connection `epoch` is up; returns why it went down, or `None` on close.
async fn connected(shared: &Shared, epoch: u64) -> Option<Arc<str>> {
    let link = &shared.commands;
    let mut rx = link.subscribe();
    let options = &shared.options;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return None,
            cause = link::wait_down(&mut rx, epoch) => return cause,
            _ = link::tick(options.watchdog_interval) => {
                let conn = match &*link.borrow() {
                    Link::Up { conn, epoch: g } if *g == epoch => Some(conn.clone()),
                    _ => None,
                };
                let Some(conn) = conn else { continue };
                if let Err(e) = watchdog_ping(conn, options.response_timeout).await {
                    link::mark_down(link, epoch, e.watchdog_cause());
                }
            }
        }
    }
}

/// Pings the multiplexed connection and, where there is one, the publish lane.
async fn watchdog_ping(mut conn: Conn, timeout: Duration) -> Result<(), link::PingError> {
    let cmd = redis::cmd("PING");
    link::ping_within(timeout, cmd.query_async::<()>(&mut conn)).await?;
    match conn.lane() {
        Some(lane) => link::ping_within(timeout, lane.ping()).await,
        None => Ok(()),
    }
}

/// The most publishes sent as one pipeline.
const MAX_BATCH: usize = 128;
/// The most pipelines awaiting their replies at once.
const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// One publish waiting for the batcher.
pub(crate) struct PublishJob {
    pub(crate) channel: String,
    pub(crate) payload: Bytes,
    /// `SPUBLISH` on a cluster (a typed event with a fixed channel), rather than `PUBLISH`.
    pub(crate) sharded: bool,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<u64, TransportError>>,
}

/// A publish in the queue, holding its in-flight permit until it is answered.
pub(crate) struct Queued {
    job: PublishJob,
    _permit: OwnedSemaphorePermit,
}

/// The publish queue: as many places as commands may be in flight.
pub(crate) fn queue(options: &RedisOptions) -> (mpsc::Sender<Queued>, mpsc::Receiver<Queued>) {
    mpsc::channel(options.max_in_flight)
}

/// Queues a publish for the batcher once an in-flight permit is free, waiting for one up to
/// the publish's deadline.
pub(crate) async fn enqueue(
    shared: &Shared,
    queue: &mpsc::Sender<Queued>,
    job: PublishJob,
) -> Result<(), TransportError> {
    let permit = match shared.in_flight.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let acquire = shared.in_flight.clone().acquire_owned();
            match tokio::time::timeout_at(job.deadline, acquire).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(closed()),
                Err(_) => return Err(shared.no_turn(WHAT, shared.options.publish_deadline)),
            }
        }
    };
    let queued = Queued {
        job,
        _permit: permit,
    };
    // Never full (every queued publish holds one of `max_in_flight` permits), but should that
    // change, waiting beats dropping.
    match queue.try_send(queued) {
        Ok(()) => Ok(()),
        Err(TrySendError::Closed(_)) => Err(closed()),
        Err(TrySendError::Full(queued)) => queue.send(queued).await.map_err(|_| closed()),
    }
}

fn closed() -> TransportError {
    TransportError::new(
        ErrorKind::Closed,
        "publishing failed: the Redis transport is closed",
    )
}

const WHAT: &str = "publishing";

/// Sends queued publishes as pipelines until the transport closes. Publishes dropped with the
/// task are answered "closed" by their callers.
pub(crate) async fn batch_publishes(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Queued>) {
    let mut sending = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            Some(()) = sending.next(), if !sending.is_empty() => {}
            job = jobs.recv(), if sending.len() < MAX_BATCHES_IN_FLIGHT => {
                let Some(first) = job else { break };
                let mut batch = Vec::with_capacity(16);
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                sending.push(send_batch(shared.clone(), batch));
            }
        }
    }
    jobs.close();
    while let Ok(queued) = jobs.try_recv() {
        let _ = queued.job.reply.send(Err(closed()));
    }
}

/// Answers the publishes whose deadline passed while they were queued with a timeout, and
/// returns the others.
fn drop_expired(shared: &Shared, batch: Vec<Queued>) -> Vec<Queued> {
    let now = Instant::now();
    if batch.iter().all(|q| q.job.deadline > now) {
        return batch;
    }
    let (live, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|q| q.job.deadline > now);
    for q in expired {
        let waited = shared.options.publish_deadline;
        let _ = q.job.reply.send(Err(shared.no_turn(WHAT, waited)));
    }
    live
}

/// `PUBLISH` for each, as one pipeline: on the publish lane where the connection has one,
/// otherwise through redis-rs.
async fn send_pipeline(
    shared: &Shared,
    batch: &[Queued],
    deadline: Instant,
) -> Result<Vec<u64>, TransportError> {
    let waited = shared.options.publish_deadline;
    shared
        .retry(WHAT, deadline, waited, |mut conn| async move {
            if let Some(lane) = conn.lane() {
                return lane.query(publish_bytes(batch), batch.len()).await;
            }
            let mut pipe = redis::Pipeline::with_capacity(batch.len());
            for q in batch {
                pipe.add_command(publish_cmd("PUBLISH", &q.job.channel, &q.job.payload));
            }
            pipe.query_async::<Vec<u64>>(&mut conn).await
        })
        .await
}

/// The batch's `PUBLISH` commands in RESP, one after another.
fn publish_bytes(batch: &[Queued]) -> Bytes {
    let size = batch
        .iter()
        .map(|q| q.job.channel.len() + q.job.payload.len() + 48)
        .sum();
    let mut out = Vec::with_capacity(size);
    for q in batch {
        out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
        for part in [q.job.channel.as_bytes(), &q.job.payload] {
            let _ = write!(out, "${}\r\n", part.len());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
    }
    Bytes::from(out)
}

/// On a cluster: `SPUBLISH` for each sharded publish, `PUBLISH` for the others, one command
/// each (each goes to the node serving its channel's slot, which broadcasts a classic
/// `PUBLISH` to every node), sent together, answered in order.
async fn send_to_cluster(
    shared: &Shared,
    batch: &[Queued],
    deadline: Instant,
) -> Result<Vec<u64>, TransportError> {
    let cmds: Vec<redis::Cmd> = batch
        .iter()
        .map(|q| {
            let verb = if q.job.sharded { "SPUBLISH" } else { "PUBLISH" };
            publish_cmd(verb, &q.job.channel, &q.job.payload)
        })
        .collect();
    let cmds = &cmds;
    let waited = shared.options.publish_deadline;
    shared
        .retry(WHAT, deadline, waited, |conn| async move {
            let sends = cmds.iter().map(|cmd| {
                let mut conn = conn.clone();
                async move { cmd.query_async::<u64>(&mut conn).await }
            });
            futures_util::future::try_join_all(sends).await
        })
        .await
}

/// Sends one pipeline, on a new connection again when the connection closed under it.
async fn send_batch(shared: Arc<Shared>, batch: Vec<Queued>) {
    let batch = drop_expired(&shared, batch);
    let Some(deadline) = batch.iter().map(|q| q.job.deadline).min() else {
        return;
    };
    let sent = if shared.target.cluster().is_some() {
        send_to_cluster(&shared, &batch, deadline).await
    } else {
        send_pipeline(&shared, &batch, deadline).await
    };
    let failure = match sent {
        Ok(counts) if counts.len() == batch.len() => {
            for (q, n) in batch.into_iter().zip(counts) {
                let _ = q.job.reply.send(Ok(n));
            }
            return;
        }
        Ok(counts) => TransportError::new(
            ErrorKind::Server,
            format!(
                "{WHAT} failed: Redis at {} answered {} replies to {} publishes",
                shared.target.addr,
                counts.len(),
                batch.len()
            ),
        ),
        Err(e) => e,
    };
    let (kind, message) = (failure.kind(), failure.message().to_owned());
    let mut failure = Some(failure);
    for q in batch {
        let e = failure
            .take()
            .unwrap_or_else(|| TransportError::new(kind, message.clone()));
        let _ = q.job.reply.send(Err(e));
    }
}
