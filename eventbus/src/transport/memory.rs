//! The in-process transport (`memory://`): Redis pub/sub semantics inside one process.
//!
//! Buses that connect to the same `memory://NAME` share a hub and see each other; a bare
//! `memory://` gets a hub of its own. Payloads travel as the same bytes a Redis transport would
//! carry, so encoding mistakes show up in tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::glob::glob_match;
use super::{BoxFuture, DeadLetter, ErrorKind, Inbound, Message, Transport, TransportError};
use crate::Topic;

/// A shared in-process hub: the "server" of the memory transport.
#[derive(Default)]
struct Hub {
    subscribers: RwLock<Vec<Arc<Member>>>,
    dead: Mutex<BTreeMap<String, Vec<DeadLetter>>>,
    next_dead: AtomicU64,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-process transport.
pub(crate) struct MemoryTransport {
    name: String,
    hub: Arc<Hub>,
    member: Arc<Member>,
    closed: AtomicBool,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("hub", &self.name)
            .finish_non_exhaustive()
    }
}

/// How many dead letters of one type the in-process store keeps.
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
        hub.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(member.clone());
        member
            .inbound
            .connection(super::ConnectionEvent::Connected { role: "subscriber" });
        Ok(MemoryTransport {
            name: if name.is_empty() {
                format!("(private #{id})")
            } else {
                name.to_owned()
            },
            hub,
            member,
            closed: AtomicBool::new(false),
        })
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

    fn deliver(&self, channel: &str, payload: Bytes) -> u64 {
        let members = self
            .hub
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let channel: Arc<str> = Arc::from(channel);
        let mut receivers = 0;
        for m in members {
            if m.channels
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&channel)
            {
                receivers += 1;
                m.inbound.message(Message {
                    channel: channel.clone(),
                    pattern: None,
                    payload: payload.clone(),
                });
            }
            let patterns: Vec<Arc<str>> = m
                .patterns
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|p| glob_match(p, &channel))
                .cloned()
                .collect();
            for p in patterns {
                receivers += 1;
                m.inbound.message(Message {
                    channel: channel.clone(),
                    pattern: Some(p),
                    payload: payload.clone(),
                });
            }
        }
        receivers
    }

    fn members(&self) -> Vec<Arc<Member>> {
        self.hub
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Transport for MemoryTransport {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            Ok(self.deliver(channel, payload))
        })
    }

    fn subscribe<'a>(&'a self, topics: &'a [Topic]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            for t in topics {
                match t {
                    Topic::Channel(c) => {
                        self.member
                            .channels
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(Arc::from(c.as_str()));
                    }
                    Topic::Pattern(p) => {
                        self.member
                            .patterns
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(Arc::from(p.as_str()));
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
                        self.member
                            .channels
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(c.as_str());
                    }
                    Topic::Pattern(p) => {
                        self.member
                            .patterns
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(p.as_str());
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

    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(async move {
            let mut all = BTreeSet::new();
            for m in self.members() {
                for c in m.channels.read().unwrap_or_else(|e| e.into_inner()).iter() {
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
                        .filter(|m| {
                            m.channels
                                .read()
                                .unwrap_or_else(|e| e.into_inner())
                                .contains(c.as_str())
                        })
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
                .map(|m| m.patterns.read().unwrap_or_else(|e| e.into_inner()).len() as u64)
                .sum())
        })
    }

    fn store_dead_letter<'a>(
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

    fn dead_letters<'a>(
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

    fn remove_dead_letter<'a>(
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

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if !self.closed.swap(true, Ordering::AcqRel) {
                self.hub
                    .subscribers
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|m| m.id != self.member.id);
            }
            Ok(())
        })
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.hub
            .subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|m| m.id != self.member.id);
    }
}
