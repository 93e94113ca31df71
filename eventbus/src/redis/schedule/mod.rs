//! Scheduled delivery on Redis: the queues (`keys.rs`), the scripts that store, cancel and move
//! messages on the server's clock (`scripts.rs`), and the mover every bus runs (`mover.rs`).

mod keys;
mod mover;
mod scripts;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;

use crate::redis::shared::Shared;
use crate::sync::lock;
use crate::transport::{
    BoxFuture, Deferred, MoverStats, QueueStatus, Route, Scheduled, Scheduler, TransportError, When,
};

pub(crate) use keys::retry_stream;
use keys::{INDEX, QueueKeys};
pub(crate) use mover::Mover;

/// The Redis transport's scheduler.
pub(crate) struct RedisScheduler {
    pub(crate) shared: Arc<Shared>,
    pub(crate) mover: Arc<Mover>,
    /// The queues this transport added to the index.
    indexed: Mutex<HashSet<String>>,
}

/// A time since the epoch in milliseconds.
fn epoch_ms(t: SystemTime) -> u64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The time `ms` milliseconds after the epoch (the epoch for a negative value).
fn from_epoch_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl RedisScheduler {
    pub(crate) fn new(shared: Arc<Shared>, mover: Arc<Mover>) -> Self {
        RedisScheduler {
            shared,
            mover,
            indexed: Mutex::default(),
        }
    }

    /// Adds `queue` to the index of queues, once per transport.
    async fn index(&self, queue: &str) -> Result<(), TransportError> {
        if lock(&self.indexed).contains(queue) {
            return Ok(());
        }
        let s = &self.shared;
        let mut cmd = redis::cmd("SADD");
        cmd.arg(INDEX).arg(queue);
        let what = "adding a schedule queue to its index";
        s.command::<()>(what, &cmd, s.options.publish_deadline)
            .await?;
        lock(&self.indexed).insert(queue.to_owned());
        Ok(())
    }

    async fn store(&self, message: &Scheduled, when: When) -> Result<SystemTime, TransportError> {
        self.index(&message.queue).await?;
        let s = &self.shared;
        let keys = QueueKeys::of(&message.queue);
        let sharded = s.target.cluster().is_some();
        let retention = s.options.stream_retention;
        let record = keys::record(
            message.route,
            sharded,
            &message.channel,
            retention,
            &message.payload,
        );
        let (mode, ms) = match when {
            When::After(delay) => ("after", delay.as_millis().min(i64::MAX as u128) as u64),
            When::At(at) => ("at", epoch_ms(at)),
        };
        let (due, now): (i64, i64) = s
            .in_turn("scheduling", s.options.publish_deadline, |mut conn| {
                let mut call = scripts::SCHEDULE.prepare_invoke();
                call.key(&keys.due).key(&keys.items);
                call.arg(&message.id).arg(mode).arg(ms).arg(&record);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        self.mover.wake_by(due - now);
        Ok(from_epoch_ms(due))
    }

    async fn remove(&self, queue: &str, id: &str) -> Result<bool, TransportError> {
        let s = &self.shared;
        let keys = QueueKeys::of(queue);
        let removed: i64 = s
            .in_turn(
                "cancelling a scheduled event",
                s.options.publish_deadline,
                |mut conn| {
                    let mut call = scripts::CANCEL.prepare_invoke();
                    call.key(&keys.due).key(&keys.items).arg(id);
                    async move { call.invoke_async(&mut conn).await }
                },
            )
            .await?;
        Ok(removed == 1)
    }

    async fn waiting(&self, queue: &str, limit: usize) -> Result<Vec<Scheduled>, TransportError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let s = &self.shared;
        let wait = s.options.response_timeout;
        let keys = QueueKeys::of(queue);
        let mut range = redis::cmd("ZRANGE");
        range
            .arg(&keys.due)
            .arg(0)
            .arg(limit.min(i64::MAX as usize) - 1);
        range.arg("WITHSCORES");
        let due: Vec<(String, f64)> = s.command("listing scheduled events", &range, wait).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("HMGET");
        get.arg(&keys.items);
        due.iter().for_each(|(id, _)| {
            get.arg(id);
        });
        let records: Vec<Value> = s.command("listing scheduled events", &get, wait).await?;
        let listed = due
            .into_iter()
            .zip(records)
            .filter_map(|((id, at), record)| {
                let Value::BulkString(record) = record else {
                    return None;
                };
                let mut message = read_record(queue, &id, &record)?;
                message.due = Some(from_epoch_ms(at as i64));
                Some(message)
            });
        Ok(listed.collect())
    }

    async fn all_queues(&self) -> Result<Vec<QueueStatus>, TransportError> {
        let s = &self.shared;
        let wait = s.options.response_timeout;
        let what = "listing schedule queues";
        let mut names: Vec<String> = s
            .command(what, redis::cmd("SMEMBERS").arg(INDEX), wait)
            .await?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for queue in names {
            let keys = QueueKeys::of(&queue);
            let waiting: u64 = s
                .command(what, redis::cmd("ZCARD").arg(&keys.due), wait)
                .await?;
            let mut first = redis::cmd("ZRANGE");
            first.arg(&keys.due).arg(0).arg(0).arg("WITHSCORES");
            let first: Vec<(String, f64)> = s.command(what, &first, wait).await?;
            out.push(QueueStatus {
                queue,
                waiting,
                next_due: first.first().map(|(_, at)| from_epoch_ms(*at as i64)),
            });
        }
        Ok(out)
    }
}

/// Hands the entry `entry_id` of `group` on `stream` off for a delayed retry: stored in the
/// queue of the group's retry stream, due after `later.delay` by the server's clock, and
/// acknowledged, in one script. When `index`, the queue is added to the index first (a queue
/// in the index with nothing in it costs the movers one look); the caller does so once.
pub(crate) async fn defer(
    shared: &Shared,
    (stream, group): (&str, &str),
    entry_id: &str,
    later: &Deferred,
    index: bool,
) -> Result<(), TransportError> {
    let retry = match stream.starts_with("eventbus:retry:") {
        true => stream.to_owned(),
        false => retry_stream(stream, group),
    };
    let wait = shared.options.publish_deadline;
    if index {
        let mut sadd = redis::cmd("SADD");
        sadd.arg(INDEX).arg(&retry);
        let what = "adding a retry queue to the index";
        shared.command::<()>(what, &sadd, wait).await?;
    }
    let keys = QueueKeys::of(&retry);
    let record = keys::retry_record(&retry, shared.options.stream_retention, later);
    let id = uuid::Uuid::now_v7().to_string();
    let delay = u64::try_from(later.delay.as_millis()).unwrap_or(u64::MAX);
    shared
        .in_turn(
            "handing an entry off for a delayed retry",
            wait,
            |mut conn| {
                let mut call = scripts::DEFER.prepare_invoke();
                call.key(&keys.due).key(&keys.items).key(stream);
                call.arg(&id)
                    .arg(delay)
                    .arg(&record)
                    .arg(group)
                    .arg(entry_id);
                async move { call.invoke_async::<()>(&mut conn).await }
            },
        )
        .await
}

/// A waiting message from its stored record.
fn read_record(queue: &str, id: &str, record: &[u8]) -> Option<Scheduled> {
    let parts = keys::parts(record)?;
    let route = match *parts.first()? {
        b"a" => Route::Append,
        b"s" => Route::PublishSharded,
        _ => Route::Publish,
    };
    let channel = String::from_utf8_lossy(parts.get(1)?).into_owned();
    let payload = Bytes::copy_from_slice(parts.last()?);
    Some(Scheduled::new(queue, id, channel, route, payload))
}

impl Scheduler for RedisScheduler {
    fn schedule<'a>(
        &'a self,
        message: &'a Scheduled,
        when: When,
    ) -> BoxFuture<'a, Result<SystemTime, TransportError>> {
        Box::pin(self.store(message, when))
    }

    fn cancel<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        Box::pin(self.remove(queue, id))
    }

    fn list<'a>(
        &'a self,
        queue: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Scheduled>, TransportError>> {
        Box::pin(self.waiting(queue, limit))
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueStatus>, TransportError>> {
        Box::pin(self.all_queues())
    }

    fn mover(&self) -> MoverStats {
        self.mover.stats()
    }
}
