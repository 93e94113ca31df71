//! The Redis pub/sub transport (`redis://`, `rediss://`, `redis+unix://`, behind Sentinel
//! `redis+sentinel://host:26379,host:26379/<master>`, and on a Redis Cluster
//! `redis+cluster://host:port,host:port/`).
//!
//! On a cluster the publisher is a cluster connection (each command goes to the node serving
//! its key: `SPUBLISH` or `PUBLISH` by channel, `XADD`/`XREADGROUP`/`XACK`/`XAUTOCLAIM` by
//! stream key), and the subscriber subscribes each channel with both sharded and classic
//! pub/sub (`SSUBSCRIBE` and `SUBSCRIBE`, one channel per command); see `cluster.rs`,
//! `cluster_subscriber.rs` and `cluster_admin.rs`.
//!
//! Behind Sentinel every connection, when it is made and each time it is made again, asks the
//! sentinels where the primary is (see `sentinel.rs`): after a failover the connections move to
//! the promoted replica by themselves, the subscriber reports `Resubscribed`, and a command
//! that gets `READONLY` from a demoted primary is sent again on a new connection. Sentinels
//! with a password of their own take it from the URL's `sentinel_password` query parameter
//! (see `sentinel_auth.rs`). `rediss+sentinel://` and `rediss+cluster://` use TLS to every
//! server, with the certificates of [`RedisOptions`] (see `tls.rs`).
//!
//! Each bus holds the publisher's connections and at most one subscriber connection (and,
//! with durable handlers, a reader connection per consumer group, see `streams.rs`):
//!
//! - the **publisher**, made by `connect`: one multiplexed connection (redis-rs) for every
//!   command (monitoring, dead letters, group queries), where concurrent commands pipeline;
//!   on a single server reached without TLS, a second connection of the bus's own, the
//!   **publish lane** (`conn/lane.rs`, named `eventbus-publish`), carries every `PUBLISH`,
//!   `XADD` and `publish_all` pipeline, written by the callers' tasks and read back without
//!   redis-rs's general reply parsing; over TLS the multiplexed connection carries those too.
//!   On a cluster reached without TLS a publish lane to each primary carries them, and the
//!   cluster connection what the lanes cannot (see `publish/mod.rs`, `cluster/lanes.rs`);
//! - the **subscriber**, one pub/sub connection for all channels and patterns, made on the
//!   first subscription (a publish-only bus has none). A reader task drains it continuously, so
//!   the server never has to buffer for a slow handler. On a single server reached without
//!   TLS it is a connection of the bus's own (`pubsub/socket.rs`, named `eventbus-subscribe`),
//!   read by hand, each message handed straight to the bus; over TLS, redis-rs's.
//!
//! Both are watched: a closed socket, a failed command or a watchdog `PING` left unanswered
//! within the response timeout marks a connection lost. It is then re-established with
//! exponential backoff and jitter, and the subscriber subscribes again to every channel and
//! pattern the bus holds. The bus reports each step as a [`ConnectionEvent`]: `Disconnected`,
//! `Reconnected`, and for the subscriber `Resubscribed`, which marks a gap, since pub/sub
//! delivers at most once. A subscription made while the subscriber is down is recorded and
//! made on reconnect.
//!
//! A publish made while the publisher is down waits for it up to the
//! [publish deadline](RedisOptions::publish_deadline), then fails with
//! [`ErrorKind::Disconnected`]. A publish whose connection closes under it is sent again on the
//! new connection (if the server had already received it, subscribers may then get it twice);
//! one that gets no answer within the [response timeout](RedisOptions::response_timeout) fails
//! with [`ErrorKind::Timeout`] and is not sent again, since the server may still run it.
//!
//! Dead letters are kept in one Redis stream per event type, `eventbus:dead:<type>`, with the
//! fields `handler`, `error`, `attempts`, `channel` and `payload`.
//!
//! Error messages and `Debug` output name the server as `host:port` (or the socket path) and
//! never contain a password.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::Topic;
use crate::transport::{
    BoxFuture, Capabilities, ConnectionEvent, DeadLetterStore, DedupeStore, ErrorKind, GroupSpec,
    GroupStatus, Inbound, PubSubAdmin, Scheduler, Transport, TransportError,
};

mod acl;
mod cluster;
mod conn;
mod deployment;
mod errors;
mod options;
mod publish;
mod pubsub;
mod schedule;
mod sentinel;
mod shared;
mod streams;
mod target;

pub use acl::LEAST_PRIVILEGE;
pub use options::RedisOptions;
pub use sentinel::discovery::DEFAULT_SENTINEL_PORT;
pub use streams::dead_letters::DEAD_LETTER_PREFIX;
pub use streams::dedupe::DEDUPE_PREFIX;
pub use streams::retention::{DEFAULT_STREAM_MAX_LEN, StreamRetention};

use conn::link::{self, Link, PingError};
use conn::open::{Lanes, open};
use deployment::PubSub;
use publish::encode::Command;
use publish::publisher;
use schedule::{Mover, RedisScheduler};
use shared::Shared;
use streams::dead_letters::DeadLetters;
use streams::dedupe::Dedupe;
use streams::reader::Streams;
use target::Target;

/// The Redis transport. See the [module documentation](self).
pub(crate) struct RedisTransport {
    shared: Arc<Shared>,
    pubsub: PubSub,
    streams: Streams,
    dead_letters: DeadLetters,
    dedupe: Dedupe,
    scheduler: RedisScheduler,
}

impl fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisTransport")
            .field("server", &s.target.addr)
            .field("db", &s.target.db)
            .field("tls", &s.target.tls)
            .field("publisher", &s.commands.borrow().name())
            .field("subscriber", &self.pubsub.state())
            .field("topics", &self.pubsub.held())
            .finish()
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Connects the publisher (failing fast when the server cannot be reached or refuses the
/// credentials) and returns the transport, delivering to `inbound`. The subscriber connects on
/// the first subscription. For [`EventBusBuilder::connect_with`](crate::EventBusBuilder::connect_with);
/// `connect(url)` calls it for `redis://`, `rediss://`, `redis+unix://` and `redis+sentinel://`
/// URLs.
pub async fn connect(
    url: &str,
    inbound: Arc<dyn Inbound>,
    options: &RedisOptions,
) -> Result<Arc<dyn Transport>, TransportError> {
    options.validate().map_err(|why| {
        TransportError::new(ErrorKind::Config, format!("invalid Redis options: {why}"))
    })?;
    let target = Target::parse(url, options)?;
    let tasks = TaskTracker::new();
    let conn = open(&target, options, Lanes::WithLane(&tasks)).await?;
    tracing::debug!(server = %target.addr, url = %target.redacted, "connected to redis");
    let shared = Arc::new(Shared::new(target, options, inbound, conn, tasks));
    shared.inbound.connection(ConnectionEvent::Connected {
        role: publisher::ROLE,
    });
    shared.spawn(publisher::supervise(shared.clone()));
    let mover = Arc::new(Mover::default());
    if let Some(every) = options.schedule_poll {
        shared.spawn(mover.clone().run(shared.clone(), every));
    }
    Ok(Arc::new(RedisTransport {
        scheduler: RedisScheduler::new(shared.clone(), mover),
        pubsub: PubSub::new(shared.clone()),
        streams: Streams::default(),
        dead_letters: DeadLetters {
            shared: shared.clone(),
        },
        dedupe: Dedupe {
            shared: shared.clone(),
        },
        shared,
    }))
}

impl RedisTransport {
    /// Publishes on the publisher's connection from the caller's task (see `publish/mod.rs`):
    /// `SPUBLISH` when `sharded` on a cluster, `PUBLISH` otherwise.
    async fn publish_as(
        &self,
        channel: &str,
        payload: Bytes,
        sharded: bool,
    ) -> Result<u64, TransportError> {
        let s = &self.shared;
        let cmd = Command::Publish {
            sharded: sharded && s.target.cluster().is_some(),
            channel,
            payload: &payload,
        };
        let publishing = s.lane_command::<u64>("publishing", cmd, s.options.publish_deadline);
        self.answer(publishing).await
    }

    /// Waits for a publish to be answered.
    async fn answer(
        &self,
        publishing: impl Future<Output = Result<u64, TransportError>>,
    ) -> Result<u64, TransportError> {
        let s = &self.shared;
        // The connection's tasks run on the runtime that created the bus. Called from that
        // runtime, the answer comes; called from another one, that runtime may not be driven,
        // so the caller bounds its wait (a timer costs too much to set on every publish).
        let here = tokio::runtime::Handle::try_current().map(|h| h.id()).ok();
        if here == Some(s.runtime) {
            return publishing.await;
        }
        let limit =
            s.options.publish_deadline + s.options.response_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, publishing).await {
            Ok(reply) => reply,
            Err(_) => Err(TransportError::new(
                ErrorKind::Timeout,
                format!(
                    "publishing got no answer within {limit:?}: the bus's connection tasks \
                     did not run; is the tokio runtime that created the bus still running?"
                ),
            )),
        }
    }
}

impl Transport for RedisTransport {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::pubsub().with_reconnects();
        caps.acks = true;
        caps.replay = true;
        caps.schedule = true;
        caps.sharded = self.pubsub.sharded();
        caps
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(self.publish_as(channel, payload, false))
    }

    fn publish_sharded<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(self.publish_as(channel, payload, true))
    }

    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.pubsub.subscribe(topics))
    }

    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.pubsub.unsubscribe(topics))
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            s.check_open()?;
            let rt = s.options.response_timeout;
            let mut rx = s.commands.subscribe();
            let (mut conn, epoch) = link::wait_up(&mut rx, Instant::now() + rt)
                .await
                .map_err(|why| s.unavailable("PING", why, rt))?;
            let started = Instant::now();
            match link::ping_within(rt, redis::cmd("PING").query_async::<()>(&mut conn)).await {
                Ok(()) => Ok(started.elapsed()),
                Err(PingError::Failed(e)) => {
                    if s.target.must_reconnect(&e) {
                        link::mark_down(&s.commands, epoch, format!("PING failed: {e}"));
                    }
                    Err(errors::command_error(&s.target.addr, "PING", e))
                }
                Err(PingError::NoAnswer(_)) => {
                    Err(errors::timeout_error(&s.target.addr, "PING", rt))
                }
            }
        })
    }

    fn ready(&self, within: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.pubsub.ready(within))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            s.check_open()?;
            let brief = s.options.response_timeout.min(Duration::from_secs(1));
            self.pubsub.close(brief).await;
            // Consumers that own nothing pending leave their groups.
            let _ = tokio::time::timeout(brief, self.streams.retire_all(s)).await;
            if s.close() {
                s.commands.send_replace(Link::Closed);
                s.tasks_ended(brief).await;
            }
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            self.shared.check_open()?;
            streams::reader::append(&self.shared, stream, payload).await
        })
    }

    fn join<'a>(&'a self, group: &'a GroupSpec) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { streams::reader::join(&self.shared, &self.streams, group).await })
    }

    fn leave<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        self.streams.leave(group);
        Box::pin(async { Ok(()) })
    }

    fn dead_letter_store(&self) -> Option<&dyn DeadLetterStore> {
        Some(&self.dead_letters)
    }

    fn pubsub_admin(&self) -> Option<&dyn PubSubAdmin> {
        Some(&self.pubsub)
    }

    fn dedupe_store(&self) -> Option<&dyn DedupeStore> {
        Some(&self.dedupe)
    }

    fn scheduler(&self) -> Option<&dyn Scheduler> {
        Some(&self.scheduler)
    }

    fn publish_many<'a>(
        &'a self,
        messages: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<u64>, TransportError>> {
        Box::pin(publish::many::publish_many(&self.shared, messages, false))
    }

    fn publish_many_sharded<'a>(
        &'a self,
        messages: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<u64>, TransportError>> {
        Box::pin(publish::many::publish_many(&self.shared, messages, true))
    }

    fn append_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(publish::many::append_many(&self.shared, entries))
    }

    fn stream_groups<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GroupStatus>, TransportError>> {
        Box::pin(streams::groups::stream_groups(&self.shared, stream))
    }
}
