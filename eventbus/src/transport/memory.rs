//! The in-process transport (`memory://`): Redis pub/sub and Redis Streams semantics inside
//! one process.
//!
//! Buses that connect to the same `memory://NAME` share a hub and see each other; a bare
//! `memory://` gets a hub of its own. Payloads travel as the same bytes a Redis transport would
//! carry, so encoding mistakes show up in tests.
//!
//! Durable types go to the hub's streams: consumer groups shared by the buses of a hub (each
//! bus one consumer), pending entries until acknowledged, redelivery, claiming of entries idle
//! on a consumer that went away, and reading only as much as the handler has credit for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::glob::glob_match;
use super::memory_dedupe::MemoryDedupe;
use super::memory_reader::{retry_stream, spawn_reader};
use super::memory_schedule::Schedules;
use super::memory_streams::Streams;
use super::schedule::MoverStats;
use super::{
    BoxFuture, Capabilities, ConnectionEvent, DeadLetter, DeadLetterStore, DedupeStore, ErrorKind,
    GroupSpec, GroupStatus, Inbound, Message, PubSubAdmin, QueueStatus, Route, Scheduled,
    Scheduler, Transport, TransportError, When,
};
use crate::Topic;
use crate::sync::{lock, read, write};

/// A shared in-process hub: the "server" of the memory transport.
#[derive(Default)]
struct Hub {
    /// Replaced whole when a transport joins or leaves, so that a delivery takes it with one
    /// reference count rather than a copy of the list.
    subscribers: RwLock<Arc<[Arc<Member>]>>,
    dead: Mutex<BTreeMap<String, Vec<DeadLetter>>>,
    next_dead: AtomicU64,
    streams: Arc<Streams>,
    dedupe: MemoryDedupe,
    schedules: Arc<Schedules>,
}

impl Hub {
    /// Delivers a pub/sub message to every member subscribed to its channel or a pattern
    /// matching it; returns how many subscriptions received it.
    fn deliver(&self, channel: &str, payload: Bytes) -> u64 {
        let members = read(&self.subscribers).clone();
        let mut receivers = 0;
        for m in members.iter() {
            // The member's own name of the channel: no new string per message.
            let subscribed = read(&m.channels).get(channel).cloned();
            if let Some(name) = subscribed {
                receivers += 1;
                m.inbound.message(Message::new(name, None, payload.clone()));
            }
            let patterns: Vec<Arc<str>> = read(&m.patterns)
                .iter()
                .filter(|p| glob_match(p, channel))
                .cloned()
                .collect();
            for p in patterns {
                receivers += 1;
                let name = Arc::from(channel);
                m.inbound
                    .message(Message::new(name, Some(p), payload.clone()));
            }
        }
        receivers
    }

    /// Sends a scheduled message that is due.
    fn fire(&self, message: &Scheduled) {
        match message.route {
            Route::Append => {
                let payload = message.payload.clone();
                let streams = &self.streams;
                streams.append_retried(&message.channel, payload, message.retried);
            }
            _ => {
                self.deliver(&message.channel, message.payload.clone());
            }
        }
    }
}

struct Member {
    id: u64,
    inbound: Arc<dyn Inbound>,
    channels: RwLock<BTreeSet<Arc<str>>>,
    patterns: RwLock<BTreeSet<Arc<str>>>,
}

fn hubs() -> &'static Mutex<HashMap<String, Weak<Hub>>> {
    static HUBS: OnceLock<Mutex<HashMap<String, Weak<Hub>>>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

/// Joins the hub named in `memory://NAME` (a private hub for a bare `memory://`), delivering
/// to `inbound`.
pub fn connect(url: &str, inbound: Arc<dyn Inbound>) -> Result<Arc<dyn Transport>, TransportError> {
    Ok(Arc::new(MemoryTransport::connect(url, inbound)?))
}

/// The in-process transport.
pub(crate) struct MemoryTransport {
    name: String,
    hub: Arc<Hub>,
    member: Arc<Member>,
    closed: AtomicBool,
    /// The reader of each joined consumer group, by group name.
    readers: Mutex<HashMap<String, CancellationToken>>,
    /// Stops every reader: on close and on drop.
    stop: CancellationToken,
    /// The group readers, waited for on close.
    tasks: TaskTracker,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("hub", &self.name)
            .finish_non_exhaustive()
    }
}

/// How many dead letters of one type the in-process store keeps; the oldest go first. (A
/// fixed bound: `RedisOptions::dead_letter_max_len` applies to the Redis store only.)
const MAX_DEAD_LETTERS: usize = 10_000;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl MemoryTransport {
    /// Joins the hub named in `memory://NAME` (a private hub for a bare `memory://`).
    pub(crate) fn connect(url: &str, inbound: Arc<dyn Inbound>) -> Result<Self, TransportError> {
        let name = url.strip_prefix("memory://").ok_or_else(|| {
            TransportError::new(
                ErrorKind::InvalidUrl,
                format!("`{url}` is not a memory:// URL"),
            )
        })?;
        let name = name.trim_end_matches('/');
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let hub = if name.is_empty() {
            Arc::new(Hub::default())
        } else {
            let mut all = lock(hubs());
            all.retain(|_, h| h.strong_count() > 0);
            match all.get(name).and_then(Weak::upgrade) {
                Some(hub) => hub,
                None => {
                    let hub = Arc::new(Hub::default());
                    all.insert(name.to_owned(), Arc::downgrade(&hub));
                    hub
                }
            }
        };
        let member = Arc::new(Member {
            id,
            inbound,
            channels: RwLock::default(),
            patterns: RwLock::default(),
        });
        let mut members = write(&hub.subscribers);
        *members = members.iter().cloned().chain([member.clone()]).collect();
        drop(members);
        member
            .inbound
            .connection(ConnectionEvent::Connected { role: "subscriber" });
        let transport = MemoryTransport {
            name: if name.is_empty() {
                format!("(private #{id})")
            } else {
                name.to_owned()
            },
            hub,
            member,
            closed: AtomicBool::new(false),
            readers: Mutex::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        transport.spawn_mover();
        Ok(transport)
    }

    /// Starts this transport's mover of the hub's scheduled messages, when a tokio runtime
    /// is there to run it (every bus of a hub runs one; each message is sent once).
    fn spawn_mover(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (hub, stop) = (self.hub.clone(), self.stop.clone());
        self.tasks.spawn(async move {
            let mover = hub.schedules.run_mover(|m| hub.fire(m));
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = mover => {}
            }
        });
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TransportError::new(
                ErrorKind::Closed,
                "the in-process transport is closed",
            ))
        } else {
            Ok(())
        }
    }

    /// Leaves the hub: nothing is delivered to this transport any more, and its group readers
    /// stop (what they read and was not acknowledged stays pending, for the others to claim).
    fn leave_hub(&self) {
        self.stop.cancel();
        lock(&self.readers).clear();
        let mut members = write(&self.hub.subscribers);
        let id = self.member.id;
        *members = members.iter().filter(|m| m.id != id).cloned().collect();
    }

    fn members(&self) -> Vec<Arc<Member>> {
        read(&self.hub.subscribers).to_vec()
    }
}

impl Transport for MemoryTransport {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            acks: true,
            replay: true,
            schedule: true,
            ..Capabilities::pubsub()
        }
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            Ok(self.hub.deliver(channel, payload))
        })
    }

    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            for t in topics {
                match t {
                    Topic::Channel(c) => {
                        write(&self.member.channels).insert(Arc::from(c.as_str()));
                    }
                    Topic::Pattern(p) => {
                        write(&self.member.patterns).insert(Arc::from(p.as_str()));
                    }
                }
            }
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            for t in topics {
                match t {
                    Topic::Channel(c) => {
                        write(&self.member.channels).remove(c.as_str());
                    }
                    Topic::Pattern(p) => {
                        write(&self.member.patterns).remove(p.as_str());
                    }
                }
            }
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, TransportError>> {
        Box::pin(async move {
            let start = Instant::now();
            self.check_open()?;
            Ok(start.elapsed())
        })
    }

    fn ready(&self, _within: Duration) -> BoxFuture<'_, Result<(), TransportError>> {
        // Subscriptions take effect when they are made.
        Box::pin(async move { self.check_open() })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if !self.closed.swap(true, Ordering::AcqRel) {
                self.leave_hub();
                self.tasks.close();
                // Each reader ends at its next await; bounded all the same.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
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
            self.check_open()?;
            Ok(self.hub.streams.append(stream, payload))
        })
    }

    fn join<'a>(&'a self, group: &'a GroupSpec) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            self.hub.streams.create_group(group);
            let cancel = self.stop.child_token();
            let previous = lock(&self.readers).insert(group.group.clone(), cancel.clone());
            if let Some(previous) = previous {
                previous.cancel();
            }
            let hub = (self.hub.streams.clone(), self.hub.schedules.clone());
            let inbound = self.member.inbound.clone();
            let channel = &group.stream;
            let main = (hub.clone(), inbound.clone(), cancel.clone());
            spawn_reader(&self.tasks, main.0, group, channel, main.1, main.2);
            if group.delayed_retries {
                let stream = retry_stream(channel, &group.group);
                let retry = GroupSpec::new(stream, &group.group, &group.consumer)
                    .start(crate::options::StartFrom::Beginning)
                    .claim_idle(group.claim_idle);
                self.hub.streams.create_group(&retry);
                spawn_reader(&self.tasks, hub, &retry, channel, inbound, cancel);
            }
            Ok(())
        })
    }

    fn leave<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if let Some(reader) = lock(&self.readers).remove(group) {
                reader.cancel();
            }
            Ok(())
        })
    }

    fn dead_letter_store(&self) -> Option<&dyn DeadLetterStore> {
        Some(self)
    }

    fn pubsub_admin(&self) -> Option<&dyn PubSubAdmin> {
        Some(self)
    }

    fn dedupe_store(&self) -> Option<&dyn DedupeStore> {
        Some(&self.hub.dedupe)
    }

    fn scheduler(&self) -> Option<&dyn Scheduler> {
        Some(self)
    }

    fn stream_groups<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GroupStatus>, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            Ok(self.hub.streams.groups(stream))
        })
    }
}

impl PubSubAdmin for MemoryTransport {
    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(async move {
            let mut all = BTreeSet::new();
            for m in self.members() {
                for c in read(&m.channels).iter() {
                    if pattern.is_none_or(|p| glob_match(p, c)) {
                        all.insert(c.to_string());
                    }
                }
            }
            Ok(all.into_iter().collect())
        })
    }

    fn numsub<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, TransportError>> {
        Box::pin(async move {
            let members = self.members();
            Ok(channels
                .iter()
                .map(|c| {
                    let n = members
                        .iter()
                        .filter(|m| read(&m.channels).contains(c.as_str()))
                        .count() as u64;
                    (c.clone(), n)
                })
                .collect())
        })
    }

    fn numpat(&self) -> BoxFuture<'_, Result<u64, TransportError>> {
        Box::pin(async move {
            Ok(self
                .members()
                .iter()
                .map(|m| read(&m.patterns).len() as u64)
                .sum())
        })
    }
}

impl DeadLetterStore for MemoryTransport {
    fn store<'a>(
        &'a self,
        letter: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<String, TransportError>> {
        Box::pin(async move {
            let n = self.hub.next_dead.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("{n}-0");
            let mut stored = letter.clone();
            stored.entry_id = id.clone();
            let mut dead = lock(&self.hub.dead);
            let list = dead.entry(letter.event_type.clone()).or_default();
            list.push(stored);
            // Bounded like the Redis store's stream (MAXLEN ~ 10000).
            if list.len() > MAX_DEAD_LETTERS {
                let excess = list.len() - MAX_DEAD_LETTERS;
                list.drain(..excess);
            }
            Ok(id)
        })
    }

    fn list<'a>(
        &'a self,
        event_type: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>> {
        Box::pin(async move {
            Ok(lock(&self.hub.dead)
                .get(event_type)
                .map(|v| v.iter().take(limit).cloned().collect())
                .unwrap_or_default())
        })
    }

    fn remove<'a>(
        &'a self,
        event_type: &'a str,
        entry_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if let Some(v) = lock(&self.hub.dead).get_mut(event_type) {
                v.retain(|d| d.entry_id != entry_id);
            }
            Ok(())
        })
    }
}

impl Scheduler for MemoryTransport {
    fn schedule<'a>(
        &'a self,
        message: &'a Scheduled,
        when: When,
    ) -> BoxFuture<'a, Result<SystemTime, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            Ok(self.hub.schedules.schedule(message, when))
        })
    }

    fn cancel<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            Ok(self.hub.schedules.cancel(queue, id))
        })
    }

    fn list<'a>(
        &'a self,
        queue: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Scheduled>, TransportError>> {
        Box::pin(async move { Ok(self.hub.schedules.list(queue, limit)) })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueStatus>, TransportError>> {
        Box::pin(async move { Ok(self.hub.schedules.queues()) })
    }

    fn mover(&self) -> MoverStats {
        self.hub.schedules.mover()
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.leave_hub();
    }
}
