//! One look at the server: pub/sub channels and patterns, streams and consumer groups.

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroup, StreamInfoGroupsReply};
use std::time::SystemTime;

use eventbus::transport::QueueStatus;
use serde_json::{Value, json};

use crate::commands::scan::stream_keys;
use crate::exit::{CliError, chain};
use crate::session::Session;

/// What `monitor` shows.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The round trip of a PING, in milliseconds.
    pub(super) ping_ms: f64,
    /// Active channels and their subscriber counts, sorted by name.
    pub(super) channels: Vec<(String, u64)>,
    /// The number of pattern subscriptions.
    pub(super) patterns: u64,
    /// Streams with their groups, sorted by key.
    pub(super) streams: Vec<StreamView>,
    /// The queues of scheduled events (a channel, a keyed type's pattern, or a group's retry
    /// stream) with how many wait.
    pub(super) scheduled: Vec<QueueStatus>,
    /// The outbox, with `--postgres`.
    pub(super) outbox: Option<super::outbox::OutboxView>,
}

/// One stream and its consumer groups.
#[derive(Debug)]
pub(super) struct StreamView {
    /// The stream key.
    pub(super) key: String,
    /// Its number of entries (XLEN).
    pub(super) length: u64,
    /// Its consumer groups (XINFO GROUPS).
    pub(super) groups: Vec<StreamInfoGroup>,
}

impl Snapshot {
    /// Takes a snapshot: channels matching `pattern` (all when `None`), streams matching
    /// `streams`.
    pub(super) async fn take(
        session: &Session,
        conn: &mut MultiplexedConnection,
        pattern: Option<&str>,
        streams: &str,
    ) -> Result<Snapshot, CliError> {
        let bus = &session.bus;
        let query = |e: eventbus::QueryError| CliError::failed(chain(&e));
        let ping_ms = bus.ping().await.map_err(query)?.as_secs_f64() * 1000.0;
        let mut names = bus.channels(pattern).await.map_err(query)?;
        names.sort();
        let channels = bus.numsub(&names).await.map_err(query)?;
        let patterns = bus.numpat().await.map_err(query)?;
        let keys = stream_keys(conn, streams)
            .await
            .map_err(|e| session.command_error("SCAN", &e))?;
        let mut views = Vec::with_capacity(keys.len());
        for key in keys {
            views.push(stream_view(session, conn, key).await?);
        }
        let scheduled = bus.scheduled_queues().await.map_err(query)?;
        Ok(Snapshot {
            ping_ms,
            channels,
            patterns,
            streams: views,
            scheduled,
            outbox: None,
        })
    }

    /// The snapshot as JSON (see `eventbus monitor --help`).
    pub(super) fn to_json(&self) -> Value {
        let channels: Vec<Value> = self
            .channels
            .iter()
            .map(|(c, n)| json!({"channel": c, "subscribers": n}))
            .collect();
        let streams: Vec<Value> = self.streams.iter().map(StreamView::to_json).collect();
        let scheduled: Vec<Value> = self.scheduled.iter().map(queue_json).collect();
        let mut value = json!({
            "ping_ms": self.ping_ms,
            "channels": channels,
            "patterns": self.patterns,
            "streams": streams,
            "scheduled": scheduled,
        });
        if let Some(outbox) = &self.outbox {
            value["outbox"] = outbox.to_json();
        }
        value
    }
}

/// A schedule queue: `next_due_in_ms` is negative when the first event is overdue.
fn queue_json(q: &QueueStatus) -> Value {
    json!({"queue": q.queue, "waiting": q.waiting, "next_due_in_ms": due_in_ms(q)})
}

/// Milliseconds until the queue's first event is due (negative: overdue); `None` when empty.
pub(super) fn due_in_ms(q: &QueueStatus) -> Option<i64> {
    let due = q.next_due?;
    let now = SystemTime::now();
    Some(match due.duration_since(now) {
        Ok(ahead) => ahead.as_millis() as i64,
        Err(late) => -(late.duration().as_millis() as i64),
    })
}

async fn stream_view(
    session: &Session,
    conn: &mut MultiplexedConnection,
    key: String,
) -> Result<StreamView, CliError> {
    let length: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(conn)
        .await
        .map_err(|e| session.command_error("XLEN", &e))?;
    let reply: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&key)
        .query_async(conn)
        .await
        .map_err(|e| session.command_error("XINFO GROUPS", &e))?;
    Ok(StreamView {
        key,
        length,
        groups: reply.groups,
    })
}

impl StreamView {
    fn to_json(&self) -> Value {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.name,
                    "consumers": g.consumers,
                    "pending": g.pending,
                    "lag": g.lag,
                    "last_delivered_id": g.last_delivered_id,
                })
            })
            .collect();
        json!({"stream": self.key, "length": self.length, "groups": groups})
    }
}
