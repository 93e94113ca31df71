//! Durable delivery on Redis Streams: `XADD` to append, one consumer group per handler read
//! with `XREADGROUP`, `XACK` after success, `XAUTOCLAIM` for entries left by a consumer that
//! died.
//!
//! Each joined group has a reader task with a connection of its own (its reads block). It
//! first re-reads this consumer's own pending entries, then claims entries idle on other
//! consumers for longer than `claim_idle`, then reads new ones; never more at a time than the
//! handler's queue has room for. Entries this process holds (see `acker.rs`) are kept fresh on
//! the server (`keep_alive.rs`), so no live peer claims them, and are not delivered again by
//! this process until they are released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::{Cmd, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::options::StartFrom;
use crate::redis::conn::connection::Conn;
use crate::redis::publish::encode::Command;
use crate::redis::schedule::retry_stream;
use crate::redis::shared::Shared;
use crate::redis::streams::acker::Acker;
use crate::redis::streams::groups;
use crate::redis::streams::keep_alive::{self, KeepAlive};
use crate::redis::streams::reply::{self, Entry};
use crate::sync::lock;
use crate::transport::{Ack, ConnectionEvent, GroupSpec, Message, TransportError};

/// The most entries read in one command.
const MAX_COUNT: usize = 256;
/// The longest a read blocks waiting for new entries.
const BLOCK: Duration = Duration::from_millis(1000);
/// The role of reader connections in connection events.
const ROLE: &str = "consumer";

/// The joined groups: a reader and a keep-alive task each.
#[derive(Default)]
pub(crate) struct Streams {
    members: Mutex<HashMap<String, (CancellationToken, GroupSpec)>>,
}

impl Streams {
    /// Stops the reader of `group`; what it read and did not acknowledge stays pending, and is
    /// kept fresh until the bus is done with it. Then the consumer deletes itself when it owns
    /// nothing pending.
    pub(crate) fn leave(&self, group: &str) {
        if let Some((token, _)) = lock(&self.members).get(group) {
            token.cancel();
        }
    }

    /// When the transport closes: every consumer of this process that owns nothing pending is
    /// deleted from its group.
    pub(crate) async fn retire_all(&self, shared: &Shared) {
        let specs: Vec<GroupSpec> = lock(&self.members)
            .drain()
            .map(|(_, (token, spec))| {
                token.cancel();
                spec
            })
            .collect();
        let retire = specs.iter().map(|spec| keep_alive::retire(shared, spec));
        futures_util::future::join_all(retire).await;
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

/// Creates the group if missing and starts its reader and keep-alive; for a group with delayed
/// retries, the same on the group's retry stream, whose entries are delivered as entries of
/// the group's stream.
pub(crate) async fn join(
    shared: &Arc<Shared>,
    streams: &Streams,
    spec: &GroupSpec,
) -> Result<(), TransportError> {
    shared.check_open()?;
    let last_seen = groups::create_group(shared, spec).await?;
    let retries = match spec.delayed_retries {
        true => {
            let retry = retry_spec(spec);
            let last_seen = groups::create_group(shared, &retry).await?;
            Some((retry, last_seen))
        }
        false => None,
    };
    let token = shared.cancel.child_token();
    let member = (token.clone(), spec.clone());
    if let Some((old, _)) = lock(&streams.members).insert(spec.group.clone(), member) {
        old.cancel();
    }
    let channel: Arc<str> = Arc::from(spec.stream.as_str());
    start_reading(shared, spec, &channel, last_seen, &token);
    if let Some((retry, last_seen)) = retries {
        start_reading(shared, &retry, &channel, last_seen, &token);
    }
    Ok(())
}

/// The group `spec` names on its retry stream, read from the start.
fn retry_spec(spec: &GroupSpec) -> GroupSpec {
    let stream = retry_stream(&spec.stream, &spec.group);
    let mut retry = GroupSpec::new(stream, &spec.group, &spec.consumer)
        .start(StartFrom::Beginning)
        .claim_idle(spec.claim_idle);
    retry.consumer_expiry = spec.consumer_expiry;
    retry
}

/// Starts the acker, keep-alive and reader of one group on one stream, delivering its entries
/// as entries of `channel`.
fn start_reading(
    shared: &Arc<Shared>,
    spec: &GroupSpec,
    channel: &Arc<str>,
    last_seen: Option<String>,
    token: &CancellationToken,
) {
    let acker = Acker::start(shared, &spec.stream, &spec.group);
    shared.spawn(
        KeepAlive {
            shared: shared.clone(),
            acker: acker.clone(),
            spec: spec.clone(),
            left: token.clone(),
        }
        .run(),
    );
    let reader = Reader {
        shared: shared.clone(),
        acker,
        group: Arc::from(spec.group.as_str()),
        channel: channel.clone(),
        spec: spec.clone(),
        token: token.clone(),
    };
    shared.spawn(reader.run(last_seen));
}

/// What the reader does next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Re-reading this consumer's own pending entries, after this id (`-`: from the start).
    Own(String),
    /// Claiming idle entries of other consumers, from this cursor.
    Claim(String),
    /// Reading new entries.
    New,
}

/// A reader's state between reads.
struct State {
    phase: Phase,
    next_claim: Instant,
    /// Failed attempts to open the connection since the last good read.
    failures: u32,
    /// Whether the connection was open once: later opens are reconnects.
    connected: bool,
    /// The last entry this group delivered, as far as this reader knows.
    last_seen: Option<String>,
}

struct Reader {
    shared: Arc<Shared>,
    acker: Arc<Acker>,
    group: Arc<str>,
    /// The channel its messages say they came on: the group's stream, also for the entries of
    /// its retry stream.
    channel: Arc<str>,
    spec: GroupSpec,
    token: CancellationToken,
}

impl Reader {
    async fn run(self, last_seen: Option<String>) {
        let mut conn: Option<Conn> = None;
        let mut st = State {
            phase: Phase::Own("-".to_owned()),
            next_claim: Instant::now(),
            failures: 0,
            connected: false,
            last_seen,
        };
        while !self.token.is_cancelled() {
            let Some(c) = self.connection(&mut conn, &mut st).await else {
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
            if st.phase == Phase::New && Instant::now() >= st.next_claim {
                // Entries released unacknowledged are this consumer's own again: re-read them.
                st.phase = if self.acker.take_released() {
                    Phase::Own("-".to_owned())
                } else {
                    Phase::Claim("0-0".to_owned())
                };
            }
            let step = tokio::select! {
                step = self.step(c, &mut st, credit) => step,
                _ = self.token.cancelled() => return,
            };
            match step {
                Ok(next) => {
                    st.failures = 0;
                    if matches!(st.phase, Phase::Claim(_)) && next == Phase::New {
                        st.next_claim = Instant::now() + self.claim_every();
                    }
                    st.phase = next;
                }
                Err(e) => {
                    if self.failed(e, &mut conn, &mut st).await {
                        st.phase = Phase::Own("-".to_owned());
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
        st: &mut State,
    ) -> Option<&'c mut Conn> {
        while conn.is_none() {
            if self.token.is_cancelled() {
                return None;
            }
            let s = &self.shared;
            let lanes = crate::redis::conn::open::Lanes::CommandsOnly;
            match crate::redis::conn::open::open(&s.target, &s.options, lanes).await {
                Ok(c) => {
                    let event = if st.connected {
                        ConnectionEvent::Reconnected {
                            role: ROLE,
                            attempts: st.failures + 1,
                        }
                    } else {
                        ConnectionEvent::Connected { role: ROLE }
                    };
                    st.connected = true;
                    s.inbound.connection(event);
                    *conn = Some(c);
                }
                Err(e) => {
                    st.failures += 1;
                    tracing::debug!(error = %e, group = %self.group, "stream reader reconnecting");
                    let delay = s.options.backoff_delay(st.failures);
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
    async fn failed(&self, e: redis::RedisError, conn: &mut Option<Conn>, st: &mut State) -> bool {
        if e.code() == Some("NOGROUP")
            && let Some(c) = conn.as_mut()
        {
            if let Err(e) = self.recreate(c, st).await {
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

    /// The group is missing (`NOGROUP`): the server restarted without its data, or the stream
    /// or group was deleted. It is created again where nothing appended since is skipped: at
    /// the last entry this reader knew the group had delivered when the stream still holds it
    /// (the same stream), otherwise at the stream's start (a new stream). Reported as a gap.
    async fn recreate(&self, conn: &mut Conn, st: &mut State) -> Result<(), redis::RedisError> {
        let mut at = "0".to_owned();
        if let Some(last) = st.last_seen.as_deref().filter(|id| *id != "0-0") {
            let held = groups::holds_cmd(&self.spec.stream, last);
            if !reply::entries(self.query(conn, &held, None).await?).is_empty() {
                at = last.to_owned();
            }
        }
        match self
            .query(conn, &groups::create_cmd(&self.spec, &at), None)
            .await
        {
            Err(e) if e.code() != Some("BUSYGROUP") => return Err(e),
            _ => {}
        }
        tracing::warn!(group = %self.group, stream = %self.spec.stream, %at, "consumer group was missing and was created again");
        self.shared
            .inbound
            .connection(ConnectionEvent::GroupRecreated {
                stream: self.spec.stream.clone(),
                group: self.spec.group.clone(),
                at,
            });
        st.phase = Phase::Own("-".to_owned());
        Ok(())
    }

    /// One read: returns the phase that follows.
    async fn step(
        &self,
        conn: &mut Conn,
        st: &mut State,
        credit: usize,
    ) -> Result<Phase, redis::RedisError> {
        match &st.phase {
            Phase::Own(after) => self.read_own(conn, after, credit).await,
            Phase::Claim(cursor) => self.claim(conn, cursor, credit).await,
            Phase::New => {
                let block = st
                    .next_claim
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), BLOCK);
                let cmd = self.read_cmd(credit, Some(block), ">");
                let entries = reply::read_group(self.query(conn, &cmd, Some(block)).await?);
                if let Some(last) = entries.last() {
                    st.last_seen = Some(last.id.clone());
                }
                self.deliver(entries.into_iter().map(|e| (e, 1)), false);
                Ok(Phase::New)
            }
        }
    }

    /// Re-reads this consumer's own pending entries after `after` that this process does not
    /// hold (read before a lost connection, or released), with `XPENDING` for their ids and
    /// counts and `XCLAIM` to itself for their contents: held entries are not touched, so their
    /// delivery counts do not grow. Claiming follows when none are left.
    async fn read_own(
        &self,
        conn: &mut Conn,
        after: &str,
        credit: usize,
    ) -> Result<Phase, redis::RedisError> {
        let start = if after == "-" {
            after.to_owned()
        } else {
            format!("({after}")
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.spec.stream)
            .arg(&self.spec.group)
            .arg(start)
            .arg("+")
            .arg(credit)
            .arg(&self.spec.consumer);
        let rows = reply::pending_counts(self.query(conn, &cmd, None).await?);
        let Some(last) = rows.last().map(|(id, _)| id.clone()) else {
            return Ok(Phase::Claim("0-0".to_owned()));
        };
        let counts: HashMap<String, u32> = rows
            .into_iter()
            .filter(|(id, _)| !self.acker.is_held(id))
            .collect();
        if counts.is_empty() {
            return Ok(Phase::Own(last));
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.spec.stream)
            .arg(&self.spec.group)
            .arg(&self.spec.consumer)
            .arg(0)
            .arg(counts.keys().collect::<Vec<_>>());
        let entries = reply::entries(self.query(conn, &cmd, None).await?);
        let gone: Vec<String> = counts
            .keys()
            .filter(|id| !entries.iter().any(|e| &e.id == *id && e.payload.is_some()))
            .cloned()
            .collect();
        self.drop_trimmed(conn, gone).await?;
        let mut entries = entries;
        entries.sort_by(|a, b| id_order(&a.id, &b.id));
        // XCLAIM counted this delivery.
        self.deliver(
            entries.into_iter().map(|e| {
                let n = counts.get(&e.id).copied().unwrap_or(0) + 1;
                (e, n)
            }),
            false,
        );
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
        let claimed: Vec<Entry> = claimed
            .into_iter()
            .filter(|e| !self.acker.is_held(&e.id))
            .collect();
        let counts = self.counts(conn, &claimed).await?;
        let entries = claimed.into_iter().map(|e| {
            let n = counts.get(&e.id).copied().unwrap_or(1);
            (e, n)
        });
        self.deliver(entries, true);
        Ok(if next == "0-0" {
            Phase::New
        } else {
            Phase::Claim(next)
        })
    }

    /// Each entry's own delivery count (`XAUTOCLAIM` does not return them): one
    /// `XPENDING <stream> <group> <id> <id> 1` per entry, pipelined.
    async fn counts(
        &self,
        conn: &mut Conn,
        entries: &[Entry],
    ) -> Result<HashMap<String, u32>, redis::RedisError> {
        if entries.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("XPENDING")
                .arg(&self.spec.stream)
                .arg(&self.spec.group)
                .arg(&e.id)
                .arg(&e.id)
                .arg(1);
        }
        let limit = self.shared.options.response_timeout;
        let replies: Vec<Value> = match tokio::time::timeout(limit, pipe.query_async(conn)).await {
            Ok(replies) => replies?,
            Err(_) => return Err(no_answer(limit)),
        };
        Ok(replies
            .into_iter()
            .flat_map(reply::pending_counts)
            .collect())
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
            Err(_) => Err(no_answer(limit)),
        }
    }

    /// Acknowledges this consumer's pending entries that were trimmed from the stream (they
    /// can never be delivered) and reports them.
    async fn drop_trimmed(
        &self,
        conn: &mut Conn,
        gone: Vec<String>,
    ) -> Result<(), redis::RedisError> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.spec.stream).arg(&self.spec.group).arg(&gone);
        self.query(conn, &cmd, None).await?;
        for id in gone {
            self.shared.inbound.trimmed(&self.group, &id);
        }
        Ok(())
    }

    fn deliver(&self, entries: impl Iterator<Item = (Entry, u32)>, claimed: bool) {
        for (entry, deliveries) in entries {
            let Some(payload) = entry.payload else {
                continue;
            };
            let Some(handle) = self.acker.hold(&entry.id) else {
                continue;
            };
            let mut ack = Ack::new(self.group.clone(), Arc::from(entry.id), deliveries, handle)
                .with_delayed(entry.delayed, entry.attempts);
            if claimed {
                ack = ack.mark_claimed();
            }
            let mut message = Message::new(self.channel.clone(), None, payload);
            message.ack = Some(ack);
            self.shared.inbound.message(message);
        }
    }
}

fn no_answer(limit: Duration) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from Redis within {limit:?}"),
    ))
}

/// Orders stream entry ids (`<ms>-<seq>`) numerically.
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a).cmp(&parse(b))
}
