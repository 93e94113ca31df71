//! The Redis pub/sub transport (`redis://`, `rediss://`, `redis+unix://`).
//!
//! Each bus holds at most two connections:
//!
//! - the **publisher**, one multiplexed connection made by `connect`, carries `PUBLISH` and
//!   every other command (monitoring, dead letters); concurrent commands pipeline on it;
//! - the **subscriber**, one pub/sub connection for all channels and patterns, made on the
//!   first subscription (a publish-only bus has none). A reader task drains it continuously, so
//!   the server never has to buffer for a slow handler.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::{Cmd, FromRedisValue, Value};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Topic;
use crate::sync::lock;
use crate::transport::{
    BoxFuture, Capabilities, ConnectionEvent, DeadLetter, DeadLetterStore, ErrorKind, GroupSpec,
    Inbound, PubSubAdmin, Transport, TransportError,
};

mod link;
mod options;
mod publisher;
mod stream_reply;
mod streams;
mod subscriber;
mod target;

pub use options::RedisOptions;

use link::{Link, Unavailable};
use publisher::Publisher;
use subscriber::Subscriber;
use target::Target;

/// The prefix of the dead-letter streams: `eventbus:dead:<event type>`.
pub const DEAD_LETTER_PREFIX: &str = "eventbus:dead:";

/// What the transport's tasks share.
pub(crate) struct Shared {
    target: Target,
    options: RedisOptions,
    inbound: Arc<dyn Inbound>,
    cancel: CancellationToken,
    closed: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
    publisher: Publisher,
    /// Where publishes queue for the batcher, each holding an `in_flight` permit.
    publish_tx: tokio::sync::mpsc::Sender<publisher::Queued>,
    /// Bounds the commands (publishes included) queued or awaiting an answer on the publisher
    /// connection: `max_in_flight` permits.
    in_flight: Arc<tokio::sync::Semaphore>,
    subscriber: Subscriber,
}

impl Shared {
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TransportError::new(
                ErrorKind::Closed,
                "the Redis transport is closed",
            ))
        } else {
            Ok(())
        }
    }

    fn track(&self, task: AbortHandle) {
        let mut tasks = lock(&self.tasks);
        if self.closed.load(Ordering::Acquire) {
            task.abort();
        } else {
            tasks.push(task);
        }
    }

    fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            t.abort();
        }
    }

    fn unavailable(&self, what: &str, why: Unavailable, waited: Duration) -> TransportError {
        let addr = &self.target.addr;
        match why {
            Unavailable::Closed => TransportError::new(
                ErrorKind::Closed,
                format!("{what} failed: the Redis transport is closed"),
            ),
            Unavailable::GaveUp(cause) => TransportError::new(
                ErrorKind::Disconnected,
                format!(
                    "{what} failed: the connection to Redis at {addr} is lost and reconnecting \
                     gave up: {cause}"
                ),
            ),
            Unavailable::Deadline(cause) => TransportError::new(
                ErrorKind::Disconnected,
                match cause {
                    Some(cause) => format!(
                        "{what} failed: not connected to Redis at {addr} for {waited:?} ({cause})"
                    ),
                    None => {
                        format!("{what} failed: not connected to Redis at {addr} for {waited:?}")
                    }
                },
            ),
        }
    }

    /// Runs a command on the publisher connection: waits up to `wait` for its turn (an
    /// in-flight permit) and for the connection to be up, bounds the command by the response
    /// timeout, and sends it again on a new connection when the connection closed under it.
    async fn command<T: FromRedisValue>(
        &self,
        what: &str,
        cmd: &Cmd,
        wait: Duration,
    ) -> Result<T, TransportError> {
        self.check_open()?;
        let deadline = Instant::now() + wait;
        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.in_flight.acquire()).await
        else {
            return Err(publisher::no_turn(self, what, wait));
        };
        link::retry(self, what, deadline, wait, |mut conn| async move {
            cmd.query_async::<T>(&mut conn).await
        })
        .await
    }
}

/// The Redis transport. See the [module documentation](self).
pub(crate) struct RedisTransport {
    shared: Arc<Shared>,
    streams: streams::Streams,
}

impl fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisTransport")
            .field("server", &s.target.addr)
            .field("db", &s.target.db)
            .field("tls", &s.target.tls)
            .field("publisher", &s.publisher.link.borrow().name())
            .field("subscriber", &s.subscriber.link.borrow().name())
            .field("topics", &s.subscriber.held())
            .finish()
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.cancel.cancel();
        self.shared.abort_tasks();
    }
}

/// Connects the publisher (failing fast when the server cannot be reached or refuses the
/// credentials) and returns the transport, delivering to `inbound`. The subscriber connects on
/// the first subscription. For [`EventBusBuilder::connect_with`](crate::EventBusBuilder::connect_with);
/// `connect(url)` calls it for `redis://`, `rediss://` and `redis+unix://` URLs.
pub async fn connect(
    url: &str,
    inbound: Arc<dyn Inbound>,
    options: &RedisOptions,
) -> Result<Arc<dyn Transport>, TransportError> {
    options.validate().map_err(|why| {
        TransportError::new(ErrorKind::Config, format!("invalid Redis options: {why}"))
    })?;
    let target = Target::parse(url, options)?;
    let conn = publisher::open(&target, options).await?;
    tracing::debug!(server = %target.addr, url = %target.redacted, "connected to redis");
    let (publish_tx, publish_rx) = publisher::queue(options);
    let shared = Arc::new(Shared {
        target,
        options: options.clone(),
        inbound,
        cancel: CancellationToken::new(),
        closed: AtomicBool::new(false),
        tasks: Mutex::new(Vec::new()),
        publisher: Publisher::new(conn),
        publish_tx,
        in_flight: Arc::new(tokio::sync::Semaphore::new(options.max_in_flight)),
        subscriber: Subscriber::new(),
    });
    shared.inbound.connection(ConnectionEvent::Connected {
        role: publisher::ROLE,
    });
    let task = tokio::spawn(publisher::supervise(shared.clone()));
    shared.track(task.abort_handle());
    let task = tokio::spawn(publisher::batch_publishes(shared.clone(), publish_rx));
    shared.track(task.abort_handle());
    Ok(Arc::new(RedisTransport {
        shared,
        streams: streams::Streams::default(),
    }))
}

fn dead_letter_key(event_type: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{event_type}")
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Reads one `XRANGE` entry: `[id, [field, value, ...]]`.
fn parse_dead_letter(event_type: &str, entry: Value) -> Option<DeadLetter> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let entry_id = text(&parts[0])?;
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    let mut letter = DeadLetter {
        entry_id,
        event_type: event_type.to_owned(),
        channel: String::new(),
        handler: String::new(),
        error: String::new(),
        attempts: 0,
        payload: Bytes::new(),
        durable: false,
    };
    for (k, v) in pairs {
        match text(&k).as_deref() {
            Some("channel") => letter.channel = text(&v).unwrap_or_default(),
            Some("handler") => letter.handler = text(&v).unwrap_or_default(),
            Some("error") => letter.error = text(&v).unwrap_or_default(),
            Some("attempts") => {
                letter.attempts = text(&v).and_then(|s| s.parse().ok()).unwrap_or(0)
            }
            Some("durable") => letter.durable = text(&v).as_deref() == Some("1"),
            Some("payload") => {
                if let Value::BulkString(b) = v {
                    letter.payload = Bytes::from(b);
                }
            }
            _ => {}
        }
    }
    Some(letter)
}

/// Reads `PUBSUB NUMSUB`'s flat `[channel, count, ...]` reply.
fn parse_numsub(reply: Vec<Value>) -> Result<Vec<(String, u64)>, TransportError> {
    let bad = || {
        TransportError::new(
            ErrorKind::Server,
            "unexpected reply to PUBSUB NUMSUB from Redis",
        )
    };
    let mut out = Vec::with_capacity(reply.len() / 2);
    let mut it = reply.into_iter();
    while let Some(channel) = it.next() {
        let count = it.next().ok_or_else(bad)?;
        let channel = text(&channel).ok_or_else(bad)?;
        let count = match count {
            Value::Int(n) => u64::try_from(n).map_err(|_| bad())?,
            other => text(&other).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
        };
        out.push((channel, count));
    }
    Ok(out)
}

impl Transport for RedisTransport {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::pubsub().with_reconnects();
        caps.acks = true;
        caps.replay = true;
        caps
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            s.check_open()?;
            let closed = || {
                TransportError::new(
                    ErrorKind::Closed,
                    "publishing failed: the Redis transport is closed",
                )
            };
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = publisher::PublishJob {
                channel: channel.to_owned(),
                payload,
                deadline: tokio::time::Instant::now() + s.options.publish_deadline,
                reply,
            };
            publisher::enqueue(s, job).await?;
            // The batcher runs on the runtime that created the bus: if that runtime is not
            // driven, nothing answers, and the caller still gets an answer in time.
            let limit =
                s.options.publish_deadline + s.options.response_timeout + Duration::from_secs(1);
            match tokio::time::timeout(limit, answer).await {
                Ok(reply) => reply.unwrap_or_else(|_| Err(closed())),
                Err(_) => Err(TransportError::new(
                    ErrorKind::Timeout,
                    format!(
                        "publishing got no answer within {limit:?}: the bus's connection tasks \
                         did not run; is the tokio runtime that created the bus still running?"
                    ),
                )),
            }
        })
    }

    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.shared.subscriber.subscribe(&self.shared, topics).await })
    }

    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.shared
                .subscriber
                .unsubscribe(&self.shared, topics)
                .await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            s.check_open()?;
            let rt = s.options.response_timeout;
            let mut rx = s.publisher.link.subscribe();
            let (mut conn, epoch) = link::wait_up(&mut rx, Instant::now() + rt)
                .await
                .map_err(|why| s.unavailable("PING", why, rt))?;
            let started = Instant::now();
            match tokio::time::timeout(rt, redis::cmd("PING").query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => Ok(started.elapsed()),
                Ok(Err(e)) => {
                    if target::is_connection_error(&e) {
                        link::mark_down(&s.publisher.link, epoch, format!("PING failed: {e}"));
                    }
                    Err(s.target.command_error("PING", e))
                }
                Err(_) => Err(s.target.timeout_error("PING", rt)),
            }
        })
    }

    fn ready(&self, within: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { self.shared.subscriber.ready(&self.shared, within).await })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            if s.closed.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            s.subscriber
                .unsubscribe_all(s.options.response_timeout.min(Duration::from_secs(1)))
                .await;
            s.cancel.cancel();
            s.abort_tasks();
            s.publisher.link.send_replace(Link::Closed);
            s.subscriber.link.send_replace(Link::Closed);
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
            streams::append(&self.shared, stream, payload).await
        })
    }

    fn join<'a>(&'a self, group: &'a GroupSpec) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { streams::join(&self.shared, &self.streams, group).await })
    }

    fn leave<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        self.streams.leave(group);
        Box::pin(async { Ok(()) })
    }

    fn dead_letter_store(&self) -> Option<&dyn DeadLetterStore> {
        Some(self)
    }

    fn pubsub_admin(&self) -> Option<&dyn PubSubAdmin> {
        Some(self)
    }
}

impl PubSubAdmin for RedisTransport {
    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("CHANNELS");
            if let Some(p) = pattern {
                cmd.arg(p);
            }
            let s = &self.shared;
            let mut channels: Vec<String> = s
                .command("PUBSUB CHANNELS", &cmd, s.options.publish_deadline)
                .await?;
            channels.sort();
            Ok(channels)
        })
    }

    fn numsub<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, TransportError>> {
        Box::pin(async move {
            if channels.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("NUMSUB").arg(channels);
            let s = &self.shared;
            let reply: Vec<Value> = s
                .command("PUBSUB NUMSUB", &cmd, s.options.publish_deadline)
                .await?;
            parse_numsub(reply)
        })
    }

    fn numpat(&self) -> BoxFuture<'_, Result<u64, TransportError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("NUMPAT");
            let s = &self.shared;
            s.command("PUBSUB NUMPAT", &cmd, s.options.publish_deadline)
                .await
        })
    }
}

impl DeadLetterStore for RedisTransport {
    fn store<'a>(
        &'a self,
        letter: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut cmd = redis::cmd("XADD");
            cmd.arg(dead_letter_key(&letter.event_type));
            if let Some(max) = s.options.dead_letter_max_len {
                cmd.arg("MAXLEN").arg("~").arg(max);
            }
            cmd.arg("*")
                .arg("handler")
                .arg(&letter.handler)
                .arg("error")
                .arg(&letter.error)
                .arg("attempts")
                .arg(letter.attempts)
                .arg("channel")
                .arg(&letter.channel)
                .arg("durable")
                .arg(if letter.durable { "1" } else { "0" })
                .arg("payload")
                .arg(letter.payload.as_ref());
            s.command("storing a dead letter", &cmd, s.options.publish_deadline)
                .await
        })
    }

    fn list<'a>(
        &'a self,
        event_type: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let s = &self.shared;
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(dead_letter_key(event_type))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit);
            let entries: Vec<Value> = s
                .command("reading dead letters", &cmd, s.options.publish_deadline)
                .await?;
            Ok(entries
                .into_iter()
                .filter_map(|e| parse_dead_letter(event_type, e))
                .collect())
        })
    }

    fn remove<'a>(
        &'a self,
        event_type: &'a str,
        entry_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut cmd = redis::cmd("XDEL");
            cmd.arg(dead_letter_key(event_type)).arg(entry_id);
            s.command::<u64>("removing a dead letter", &cmd, s.options.publish_deadline)
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_replies_are_paired() {
        let reply = vec![
            Value::BulkString(b"a".to_vec()),
            Value::Int(2),
            Value::BulkString(b"b".to_vec()),
            Value::Int(0),
        ];
        assert_eq!(
            parse_numsub(reply).unwrap(),
            vec![("a".to_owned(), 2), ("b".to_owned(), 0)]
        );
        assert!(parse_numsub(vec![Value::BulkString(b"a".to_vec())]).is_err());
    }

    #[test]
    fn dead_letter_entries_are_read() {
        let field = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            field("1-0"),
            Value::Array(vec![
                field("handler"),
                field("h"),
                field("error"),
                field("boom"),
                field("attempts"),
                field("3"),
                field("channel"),
                field("events:x"),
                field("payload"),
                Value::BulkString(vec![0, 159, 146, 150]),
            ]),
        ]);
        let d = parse_dead_letter("x", entry).unwrap();
        assert_eq!(d.entry_id, "1-0");
        assert_eq!(d.handler, "h");
        assert_eq!(d.error, "boom");
        assert_eq!(d.attempts, 3);
        assert_eq!(d.channel, "events:x");
        assert_eq!(&d.payload[..], &[0, 159, 146, 150]);
    }
}
