//! The publisher: one multiplexed connection for `PUBLISH` and every other command, so
//! concurrent commands pipeline on one socket. A supervisor task pings it and replaces it when
//! it is lost.
//!
//! Publishes go through a batcher: one task takes every publish queued while earlier batches
//! were on the wire and sends them as one pipeline (one write, one reply), with a few batches
//! in flight at once. A lone publish goes out at once as a batch of one.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::RedisOptions;
use super::Shared;
use super::link::{self, Link};
use super::target::Target;
use crate::transport::{ConnectionEvent, ErrorKind, TransportError};

pub(crate) const ROLE: &str = "publisher";

pub(crate) struct Publisher {
    pub(crate) link: watch::Sender<Link<MultiplexedConnection>>,
}

impl Publisher {
    pub(crate) fn new(conn: MultiplexedConnection) -> Self {
        Publisher {
            link: watch::Sender::new(Link::Up { conn, epoch: 1 }),
        }
    }
}

/// Opens a connection and checks it with a `PING` (which also reveals a missing password:
/// without one, connecting succeeds and only the first command gets `NOAUTH`).
pub(crate) async fn open(
    target: &Target,
    options: &RedisOptions,
) -> Result<MultiplexedConnection, TransportError> {
    let config = target.config(options);
    let connect = target
        .client
        .get_multiplexed_async_connection_with_config(&config);
    let mut conn = match tokio::time::timeout(options.connect_timeout, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(target.connect_error(e, options.connect_timeout)),
        Err(_) => {
            return Err(target.connect_error(
                std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
                options.connect_timeout,
            ));
        }
    };
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<()>(&mut conn);
    match tokio::time::timeout(options.response_timeout, ping).await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(e)) => Err(target.connect_error(e, options.connect_timeout)),
        Err(_) => Err(target.connect_error(
            std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
            options.response_timeout,
        )),
    }
}

/// Keeps the publisher connected: watches for a reported failure or an unanswered watchdog
/// `PING`, then reconnects with backoff.
pub(crate) async fn supervise(shared: Arc<Shared>) {
    let link = &shared.publisher.link;
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
        let opened = link::reconnect(&shared, ROLE, link, || {
            open(&shared.target, &shared.options)
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
    let link = &shared.publisher.link;
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
                if let Err(cause) = watchdog_ping(conn, options).await {
                    link::mark_down(link, epoch, cause);
                }
            }
        }
    }
}

async fn watchdog_ping(
    mut conn: MultiplexedConnection,
    options: &RedisOptions,
) -> Result<(), String> {
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<()>(&mut conn);
    match tokio::time::timeout(options.response_timeout, ping).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("watchdog PING failed: {e}")),
        Err(_) => Err(format!(
            "watchdog PING got no answer within {:?}",
            options.response_timeout
        )),
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
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<u64, TransportError>>,
}

/// Sends queued publishes as pipelines until the transport closes.
pub(crate) async fn batch_publishes(
    shared: Arc<Shared>,
    mut jobs: mpsc::UnboundedReceiver<PublishJob>,
) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            job = jobs.recv(), if in_flight.len() < MAX_BATCHES_IN_FLIGHT => {
                let Some(first) = job else { break };
                let mut batch = Vec::with_capacity(16);
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                in_flight.push(send_batch(shared.clone(), batch));
            }
        }
    }
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(TransportError::new(
            ErrorKind::Closed,
            "publishing failed: the Redis transport is closed",
        )));
    }
}

/// Sends one pipeline, on a new connection again when the connection closed under it.
async fn send_batch(shared: Arc<Shared>, batch: Vec<PublishJob>) {
    const WHAT: &str = "publishing";
    let deadline = batch
        .iter()
        .map(|j| j.deadline)
        .min()
        .unwrap_or_else(Instant::now);
    let mut pipe = redis::pipe();
    for job in &batch {
        pipe.cmd("PUBLISH")
            .arg(&job.channel)
            .arg(job.payload.as_ref());
    }
    let mut rx = shared.publisher.link.subscribe();
    let response_timeout = shared.options.response_timeout;
    let failure = loop {
        let (mut conn, epoch) = match link::wait_up(&mut rx, deadline).await {
            Ok(up) => up,
            Err(why) => break shared.unavailable(WHAT, why, shared.options.publish_deadline),
        };
        match tokio::time::timeout(response_timeout, pipe.query_async::<Vec<u64>>(&mut conn)).await
        {
            Ok(Ok(counts)) if counts.len() == batch.len() => {
                for (job, n) in batch.into_iter().zip(counts) {
                    let _ = job.reply.send(Ok(n));
                }
                return;
            }
            Ok(Ok(counts)) => {
                break TransportError::new(
                    ErrorKind::Server,
                    format!(
                        "{WHAT} failed: Redis at {} answered {} replies to {} publishes",
                        shared.target.addr,
                        counts.len(),
                        batch.len()
                    ),
                );
            }
            Ok(Err(e)) if super::target::is_connection_error(&e) => {
                link::mark_down(&shared.publisher.link, epoch, format!("{WHAT} failed: {e}"));
                if Instant::now() >= deadline {
                    break shared.target.command_error(WHAT, e);
                }
            }
            Ok(Err(e)) => break shared.target.command_error(WHAT, e),
            Err(_) => break shared.target.timeout_error(WHAT, response_timeout),
        }
    };
    let (kind, message) = (failure.kind(), failure.message().to_owned());
    let mut failure = Some(failure);
    for job in batch {
        let e = failure
            .take()
            .unwrap_or_else(|| TransportError::new(kind, message.clone()));
        let _ = job.reply.send(Err(e));
    }
}
