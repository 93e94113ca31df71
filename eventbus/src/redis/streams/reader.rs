//! Durable delivery on Redis Streams: `XADD` to append, one consumer group per handler read
//! with `XREADGROUP`, `XACK` after success, `XAUTOCLAIM` for entries left by a consumer that
//! died.
//!
//! Each joined group has a reader task with a connection of its own (its reads block). It
//! first re-reads this consumer's own pending entries, then claims entries idle on other
//! consumers for longer than `claim_idle`, then reads new ones; never more at a time than the
//! handler's queue has room for. Entries this process holds and has not acknowledged are not
//! claimed back by its own reader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::redis::conn::connection::Conn;
use bytes::Bytes;
use redis::{Cmd, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::options::StartFrom;
use crate::redis::publish::encode::Command;
use crate::redis::shared::Shared;
use crate::redis::streams::acker::Acker;
use crate::redis::streams::reply::{self, Entry};
use crate::sync::lock;
use crate::transport::{
    Ack, Acknowledge, ConnectionEvent, GroupSpec, GroupStatus, Message, TransportError,
};

/// The most entries read in one command.
const MAX_COUNT: usize = 256;
/// The longest a read blocks waiting for new entries.
const BLOCK: Duration = Duration::from_millis(1000);
/// The role of reader connections in connection events.
const ROLE: &str = "consumer";

/// The reader tasks of the joined groups.
#[derive(Default)]
pub(crate) struct Streams {
    readers: Mutex<HashMap<String, CancellationToken>>,
}

impl Streams {
    /// Stops the reader of `group`; what it read and did not acknowledge stays pending.
    pub(crate) fn leave(&self, group: &str) {
        if let Some(token) = lock(&self.readers).remove(group) {
            token.cancel();
        }
    }
}

/// `XADD stream <retention> * envelope <payload>`; returns the entry id.
pub(crate) async fn append(
    shared: &Shared,
    stream: &str,
    payload: Bytes,
) -> Result<String, TransportError> {
    let trim = shared.options.stream_retention.args(SystemTime::now());
    let cmd = Command::Append {
        stream,
        trim: &trim,
        payload: &payload,
    };
    let wait = shared.options.publish_deadline;
    shared
        .lane_command("appending to a stream", cmd, wait)
        .await
}

/// Creates the group if missing and starts its reader.
pub(crate) async fn join(
    shared: &Arc<Shared>,
    streams: &Streams,
    spec: &GroupSpec,
) -> Result<(), TransportError> {
    shared.check_open()?;
    create_group(shared, spec).await?;
    let token = shared.cancel.child_token();
    if let Some(old) = lock(&streams.readers).insert(spec.group.clone(), token.clone()) {
        old.cancel();
    }
    let reader = Reader {
        shared: shared.clone(),
        acker: Acker::start(shared, &spec.stream, &spec.group),
        group: Arc::from(spec.group.as_str()),
        spec: spec.clone(),
        token,
    };
    shared.spawn(reader.run());
    Ok(())
}

fn start_id(start: StartFrom) -> String {
    match start {
        StartFrom::New => "$".to_owned(),
        StartFrom::Beginning => "0".to_owned(),
        StartFrom::Time(t) => {
            let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
            format!("{ms}-0")
        }
    }
}

/// `XGROUP CREATE ... MKSTREAM`; an existing group keeps its position.
async fn create_group(shared: &Shared, spec: &GroupSpec) -> Result<(), TransportError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(&spec.stream)
        .arg(&spec.group)
        .arg(start_id(spec.start))
        .arg("MKSTREAM");
    let wait = shared.options.publish_deadline;
    shared
        .in_turn("creating a consumer group", wait, |mut conn| {
            let cmd = &cmd;
            async move {
                match cmd.query_async::<()>(&mut conn).await {
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                    other => other,
                }
            }
        })
        .await
}

/// `XINFO GROUPS stream`: every group of the stream; none when the stream is missing.
pub(crate) async fn stream_groups(
    shared: &Shared,
    stream: &str,
) -> Result<Vec<GroupStatus>, TransportError> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("GROUPS").arg(stream);
    let wait = shared.options.response_timeout;
    shared
        .in_turn("reading consumer groups", wait, |mut conn| {
            let cmd = &cmd;
            async move {
                match cmd.query_async::<Value>(&mut conn).await {
                    Ok(reply) => Ok(reply::groups(reply, stream)),
                    // A missing stream is `ERR no such key`: its absence is checked, not read
                    // from the message.
                    Err(e) if e.code() == Some("ERR") => {
                        let exists: bool = redis::cmd("EXISTS")
                            .arg(stream)
                            .query_async(&mut conn)
                            .await?;
                        if exists { Err(e) } else { Ok(Vec::new()) }
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await
}

/// What the reader does next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Re-reading this consumer's own pending entries, after this id.
    Own(String),
    /// Claiming idle entries of other consumers, from this cursor.
    Claim(String),
    /// Reading new entries.
    New,
}

struct Reader {
    shared: Arc<Shared>,
    acker: Arc<Acker>,
    group: Arc<str>,
    spec: GroupSpec,
    token: CancellationToken,
}

impl Reader {
    async fn run(self) {
        let mut conn: Option<Conn> = None;
        let mut phase = Phase::Own("0".to_owned());
        let mut next_claim = Instant::now();
        let mut failures = 0u32;
        while !self.token.is_cancelled() {
            let Some(c) = self.connection(&mut conn, &mut failures).await else {
                return;
            };
            let credit = self.shared.inbound.credit(&self.group).min(MAX_COUNT);
            if credit == 0 {
                tokio::select! {
                    _ = self.shared.inbound.credit_available(&self.group) => {}
                    _ = self.token.cancelled() => return,
                }
                continue;
            }
            if phase == Phase::New && Instant::now() >= next_claim {
                phase = Phase::Claim("0-0".to_owned());
            }
            let step = tokio::select! {
                step = self.step(c, &phase, credit, next_claim) => step,
                _ = self.token.cancelled() => return,
            };
            match step {
                Ok(next) => {
                    failures = 0;
                    if matches!(phase, Phase::Claim(_)) && next == Phase::New {
                        next_claim = Instant::now() + self.claim_every();
                    }
                    phase = next;
                }
                Err(e) => {
                    if self.failed(e, &mut conn).await {
                        phase = Phase::Own("0".to_owned());
                    }
                }
            }
        }
    }

    fn claim_every(&self) -> Duration {
        (self.spec.claim_idle / 2).max(Duration::from_millis(50))
    }

    /// The reader's connection, opened again after a loss with backoff. `None` when closing.
    async fn connection<'c>(
        &self,
        conn: &'c mut Option<Conn>,
        failures: &mut u32,
    ) -> Option<&'c mut Conn> {
        while conn.is_none() {
            if self.token.is_cancelled() {
                return None;
            }
            let s = &self.shared;
            let lanes = crate::redis::conn::open::Lanes::CommandsOnly;
            match crate::redis::conn::open::open(&s.target, &s.options, lanes).await {
                Ok(c) => {
                    let event = if *failures == 0 {
                        ConnectionEvent::Connected { role: ROLE }
                    } else {
                        ConnectionEvent::Reconnected {
                            role: ROLE,
                            attempts: *failures,
                        }
                    };
                    s.inbound.connection(event);
                    *conn = Some(c);
                }
                Err(e) => {
                    *failures += 1;
                    tracing::debug!(error = %e, group = %self.group, "stream reader reconnecting");
                    let delay = s.options.backoff_delay(*failures);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.token.cancelled() => return None,
                    }
                }
            }
        }
        conn.as_mut()
    }

    /// Handles a failed step; returns whether the connection was lost (so pending entries are
    /// read again from the start).
    async fn failed(&self, e: redis::RedisError, conn: &mut Option<Conn>) -> bool {
        if e.code() == Some("NOGROUP") {
            // The stream or group was deleted: make it again, from its start position.
            if let Err(e) = create_group(&self.shared, &self.spec).await {
                tracing::warn!(error = %e, group = %self.group, "recreating a consumer group failed");
            }
            return false;
        }
        let lost = self.shared.target.must_reconnect(&e) || e.is_timeout();
        if lost {
            *conn = None;
            self.shared
                .inbound
                .connection(ConnectionEvent::Disconnected {
                    role: ROLE,
                    cause: e.to_string(),
                });
        } else {
            tracing::warn!(error = %e, group = %self.group, "reading a stream failed");
            tokio::select! {
                _ = tokio::time::sleep(self.shared.options.backoff_delay(1)) => {}
                _ = self.token.cancelled() => {}
            }
        }
        lost
    }

    /// One read: returns the phase that follows.
    async fn step(
        &self,
        conn: &mut Conn,
        phase: &Phase,
        credit: usize,
        next_claim: Instant,
    ) -> Result<Phase, redis::RedisError> {
        match phase {
            Phase::Own(after) => self.read_own(conn, after, credit).await,
            Phase::Claim(cursor) => self.claim(conn, cursor, credit).await,
            Phase::New => {
                let block = next_claim
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), BLOCK);
                let cmd = self.read_cmd(credit, Some(block), ">");
                let entries = reply::read_group(self.query(conn, &cmd, Some(block)).await?);
                self.deliver(entries.into_iter().map(|e| (e, 1)), false);
                Ok(Phase::New)
            }
        }
    }

    /// Reads this consumer's own pending entries after `after`; claiming follows when none
    /// are left.
    async fn read_own(
        &self,
        conn: &mut Conn,
        after: &str,
        credit: usize,
    ) -> Result<Phase, redis::RedisError> {
        let cmd = self.read_cmd(credit, None, after);
        let entries = reply::read_group(self.query(conn, &cmd, None).await?);
        let Some(last) = entries.last().map(|e| e.id.clone()) else {
            return Ok(Phase::Claim("0-0".to_owned()));
        };
        let (live, gone): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.payload.is_some());
        // One this process still runs keeps its payload, and is acknowledged by its run.
        let held = lock(&self.acker.held).clone();
        let gone = gone.into_iter().filter(|e| !held.contains(&e.id)).collect();
        self.drop_trimmed(conn, gone).await?;
        self.deliver_counted(conn, live, false).await?;
        Ok(Phase::Own(last))
    }

    /// Claims entries idle past `claim_idle` from `cursor` on; new entries follow when the
    /// scan is complete.
    async fn claim(
        &self,
        conn: &mut Conn,
        cursor: &str,
        credit: usize,
    ) -> Result<Phase, redis::RedisError> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.spec.stream)
            .arg(&self.spec.group)
            .arg(&self.spec.consumer)
            .arg(self.spec.claim_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(credit);
        let reply = self.query(conn, &cmd, None).await?;
        let (next, claimed, deleted) = reply::auto_claim(reply);
        // The server has already removed these from the group's pending entries.
        for id in deleted {
            self.shared.inbound.trimmed(&self.group, &id);
        }
        let held = lock(&self.acker.held).clone();
        let claimed = claimed
            .into_iter()
            .filter(|e| !held.contains(&e.id))
            .collect();
        self.deliver_counted(conn, claimed, true).await?;
        Ok(if next == "0-0" {
            Phase::New
        } else {
            Phase::Claim(next)
        })
    }

    fn read_cmd(&self, count: usize, block: Option<Duration>, id: &str) -> Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.spec.group)
            .arg(&self.spec.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.spec.stream).arg(id);
        cmd
    }

    async fn query(
        &self,
        conn: &mut Conn,
        cmd: &Cmd,
        block: Option<Duration>,
    ) -> Result<Value, redis::RedisError> {
        let limit = self.shared.options.response_timeout + block.unwrap_or_default();
        match tokio::time::timeout(limit, cmd.query_async::<Value>(conn)).await {
            Ok(reply) => reply,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from Redis within {limit:?}"),
            ))),
        }
    }

    /// Acknowledges this consumer's pending entries that were trimmed from the stream (they
    /// can never be delivered) and reports them.
    async fn drop_trimmed(
        &self,
        conn: &mut Conn,
        gone: Vec<Entry>,
    ) -> Result<(), redis::RedisError> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.spec.stream).arg(&self.spec.group);
        for entry in &gone {
            cmd.arg(&entry.id);
        }
        self.query(conn, &cmd, None).await?;
        for entry in gone {
            self.shared.inbound.trimmed(&self.group, &entry.id);
        }
        Ok(())
    }

    /// Delivers entries that were delivered before, with their delivery counts; `claimed` when
    /// they were taken over from another consumer.
    async fn deliver_counted(
        &self,
        conn: &mut Conn,
        entries: Vec<Entry>,
        claimed: bool,
    ) -> Result<(), redis::RedisError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.spec.stream)
            .arg(&self.spec.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len() * 2)
            .arg(&self.spec.consumer);
        let counts: HashMap<String, u32> =
            reply::pending_counts(self.query(conn, &cmd, None).await?)
                .into_iter()
                .collect();
        let entries = entries.into_iter().map(|e| {
            let n = counts.get(&e.id).copied().unwrap_or(1);
            (e, n)
        });
        self.deliver(entries, claimed);
        Ok(())
    }

    fn deliver(&self, entries: impl Iterator<Item = (Entry, u32)>, claimed: bool) {
        let channel: Arc<str> = Arc::from(self.spec.stream.as_str());
        for (entry, deliveries) in entries {
            let Some(payload) = entry.payload else {
                continue;
            };
            if !lock(&self.acker.held).insert(entry.id.clone()) {
                continue;
            }
            let handle: Arc<dyn Acknowledge> = self.acker.clone();
            let mut ack = Ack::new(self.group.clone(), Arc::from(entry.id), deliveries, handle);
            if claimed {
                ack = ack.mark_claimed();
            }
            let mut message = Message::new(channel.clone(), None, payload);
            message.ack = Some(ack);
            self.shared.inbound.message(message);
        }
    }
}
