//! The receiving side: routes each incoming message to the queues of its handlers, parsing
//! the envelope once and decoding it once per argument type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::hooks::Hooks;
use super::queue::{Pushed, Queue};
use super::slot::Slot;
use crate::Topic;
use crate::envelope::{DecodeError, RawEnvelope};
use crate::error::{DecodeFailure, Failure, OverflowFailure};
use crate::handler::{ArgKind, Delivery, Verdict};
use crate::metrics::BusStats;
use crate::sync::{read, write};
use crate::transport::{BoxFuture, ConnectionEvent, Inbound, Message};

type SlotList = Arc<[Arc<Slot>]>;

/// Which handlers hold which channel or pattern.
#[derive(Default)]
struct Routes {
    channels: HashMap<String, SlotList>,
    patterns: HashMap<String, SlotList>,
    order: Vec<Arc<Slot>>,
}

impl Routes {
    fn map<'a>(&mut self, topic: &'a Topic) -> (&mut HashMap<String, SlotList>, &'a str) {
        match topic {
            Topic::Channel(c) => (&mut self.channels, c),
            Topic::Pattern(p) => (&mut self.patterns, p),
        }
    }

    fn holders(&self, topic: &Topic) -> Option<&SlotList> {
        match topic {
            Topic::Channel(c) => self.channels.get(c),
            Topic::Pattern(p) => self.patterns.get(p),
        }
    }
}

/// The bus side of the transport: routes each message to the queues of its handlers.
pub(crate) struct Router {
    routes: RwLock<Routes>,
    stats: Arc<BusStats>,
    hooks: Arc<Hooks>,
    max_message_size: usize,
}

/// Values decoded for one message, one per argument type.
#[derive(Default)]
struct Decoded {
    values: Vec<(TypeId, Option<Arc<dyn Any + Send + Sync>>)>,
    /// Types whose bad data was already reported: once per type, whatever the argument forms.
    reported: Vec<&'static str>,
}

impl Router {
    pub(crate) fn new(stats: Arc<BusStats>, hooks: Arc<Hooks>, max_message_size: usize) -> Self {
        Router {
            routes: RwLock::default(),
            stats,
            hooks,
            max_message_size,
        }
    }

    /// Adds a handler; returns the topics that had no handler before. A durable handler reads
    /// for its group, not from topics.
    pub(crate) fn add(&self, slot: Arc<Slot>) -> Vec<Topic> {
        let mut routes = write(&self.routes);
        let mut fresh = Vec::new();
        let topics = if slot.group.is_some() {
            &[][..]
        } else {
            &slot.topics[..]
        };
        for topic in topics {
            let (map, key) = routes.map(topic);
            let list = map.entry(key.to_owned()).or_insert_with(|| Arc::from([]));
            if list.is_empty() {
                fresh.push(topic.clone());
            }
            let mut v = list.to_vec();
            v.push(slot.clone());
            *list = Arc::from(v);
        }
        routes.order.push(slot);
        fresh
    }

    /// Removes a handler; returns it and the topics that have no handler left.
    pub(crate) fn remove(&self, id: u64) -> (Option<Arc<Slot>>, Vec<Topic>) {
        let mut routes = write(&self.routes);
        let Some(pos) = routes.order.iter().position(|s| s.id == id) else {
            return (None, Vec::new());
        };
        let slot = routes.order.remove(pos);
        let mut gone = Vec::new();
        let topics = if slot.group.is_some() {
            &[][..]
        } else {
            &slot.topics[..]
        };
        for topic in topics {
            let (map, key) = routes.map(topic);
            if let Some(list) = map.get_mut(key) {
                let v: Vec<_> = list.iter().filter(|s| s.id != id).cloned().collect();
                if v.is_empty() {
                    map.remove(key);
                    gone.push(topic.clone());
                } else {
                    *list = Arc::from(v);
                }
            }
        }
        (Some(slot), gone)
    }

    /// The topics whose only handler is `id`.
    pub(crate) fn topics_held_only_by(&self, id: u64) -> Vec<Topic> {
        let routes = read(&self.routes);
        let Some(slot) = routes.order.iter().find(|s| s.id == id) else {
            return Vec::new();
        };
        slot.topics
            .iter()
            .filter(|t| {
                routes
                    .holders(t)
                    .is_some_and(|l| l.iter().all(|s| s.id == id))
            })
            .cloned()
            .collect()
    }

    /// Every handler, in registration order.
    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        read(&self.routes).order.clone()
    }

    /// Every topic some handler holds.
    pub(crate) fn topics(&self) -> Vec<Topic> {
        let routes = read(&self.routes);
        routes
            .channels
            .keys()
            .map(|c| Topic::Channel(c.clone()))
            .chain(routes.patterns.keys().map(|p| Topic::Pattern(p.clone())))
            .collect()
    }

    /// The handler reading for a consumer group of an at-least-once transport.
    fn group(&self, group: &str) -> Option<Arc<Slot>> {
        read(&self.routes)
            .order
            .iter()
            .find(|s| s.group.as_deref() == Some(group))
            .cloned()
    }

    fn lookup(&self, message: &Message) -> Option<SlotList> {
        let routes = read(&self.routes);
        if let Some(ack) = &message.ack {
            // Read for one group: its handler alone takes it.
            let slot = routes
                .order
                .iter()
                .find(|s| s.group.as_deref() == Some(&*ack.group))?;
            return Some(Arc::from([slot.clone()]));
        }
        match &message.pattern {
            Some(p) => routes.patterns.get(&**p).cloned(),
            None => routes.channels.get(&*message.channel).cloned(),
        }
    }

    fn decode_failed(&self, message: &Message, event_type: Option<&str>, error: DecodeError) {
        self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
        self.hooks.report(Failure::Decode(DecodeFailure {
            channel: message.channel.clone(),
            event_type: event_type.map(Arc::from),
            excerpt: message.excerpt(),
            len: message.payload.len(),
            error: Arc::new(error),
            entry_id: None,
        }));
    }

    /// Parses the envelope for the handlers that need one; a bad envelope is reported once.
    fn parse(&self, message: &Message, slots: &[Arc<Slot>]) -> Option<Arc<RawEnvelope>> {
        match RawEnvelope::parse(&message.payload) {
            Ok(raw) => {
                // Counted per type only for types a handler here declares, so that arbitrary
                // `type` strings from the network cannot grow the map.
                if slots.iter().any(|s| accepts(s, &raw)) {
                    self.stats
                        .of_type(raw.event_type())
                        .received
                        .fetch_add(1, Ordering::Relaxed);
                }
                Some(Arc::new(raw))
            }
            Err(e) => {
                for s in slots.iter().filter(|s| needs_envelope(s)) {
                    s.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.decode_failed(message, None, e);
                None
            }
        }
    }

    /// Hands a message to one handler's queue, counting what became of it.
    fn enqueue(&self, slot: &Slot, delivery: Delivery) {
        let dropped = match slot.queue.push(delivery) {
            Pushed::Queued => {
                slot.stats.received.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Pushed::Closed(delivery) => {
                // The handler was removed while this message was being routed; a durable entry
                // stays pending, for the next consumer.
                if let Some(ack) = &delivery.message.ack {
                    ack.release();
                }
                self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Pushed::Dropped(dropped) => dropped,
        };
        slot.stats.received.fetch_add(1, Ordering::Relaxed);
        let total = slot.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if total == 1 || total.is_multiple_of(1000) {
            self.hooks.report(Failure::Overflow(OverflowFailure {
                handler: slot.name.clone(),
                event_id: dropped.event_id().map(str::to_owned),
                capacity: slot.queue.capacity,
                dropped_total: total,
            }));
        }
    }

    /// Decodes for and queues to a typed handler.
    fn route_typed(
        &self,
        message: &Message,
        raw: &Arc<RawEnvelope>,
        slot: &Arc<Slot>,
        decoded: &mut Decoded,
    ) {
        let ArgKind::Envelope {
            key,
            decode,
            event_type,
            ..
        } = slot.kind
        else {
            return;
        };
        let key = key();
        let value = match decoded.values.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => v.clone(),
            None => {
                let v = match decode(raw) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        if !decoded.reported.contains(&event_type) {
                            decoded.reported.push(event_type);
                            let of_type = self.stats.of_type(event_type);
                            of_type.decode_errors.fetch_add(1, Ordering::Relaxed);
                            self.decode_failed(message, Some(event_type), e);
                        }
                        None
                    }
                };
                decoded.values.push((key, v.clone()));
                v
            }
        };
        let Some(value) = value else {
            slot.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Every handler of the type shares the decoded value: on its worker, off the reader's
        // path, each takes a copy (a `Clone` type) or decodes its own, and the last one to take
        // it gets the value itself.
        self.enqueue(
            slot,
            Delivery {
                message: message.clone(),
                raw: Some(raw.clone()),
                decoded: Some(value),
                verdict: Verdict::Run,
            },
        );
    }

    /// Checks and decodes a durable entry for the one handler of its group, and queues it with
    /// the verdict: run, skip (another `dataversion`) or reject (dead-lettered at once by the
    /// worker, counted here as a decode error).
    fn route_durable(&self, slot: &Arc<Slot>, message: Message) {
        let size = message.payload.len();
        slot.queue.note_read_size(size);
        let mut delivery = Delivery {
            message,
            raw: None,
            decoded: None,
            verdict: Verdict::Run,
        };
        if let Err(error) = self.inspect_durable(slot, &mut delivery) {
            self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            slot.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            let of_type = self.stats.of_type(&slot.event_type);
            of_type.decode_errors.fetch_add(1, Ordering::Relaxed);
            if size > self.max_message_size {
                // Only its first bytes are kept, for the dead letter; the rest goes now.
                let kept = &delivery.message.payload[..size.min(OVERSIZED_KEPT)];
                delivery.message.payload = Bytes::copy_from_slice(kept);
            }
            let error = Arc::new(error);
            delivery.verdict = Verdict::Reject { error, size };
        }
        self.enqueue(slot, delivery);
    }

    /// What a durable entry is to its handler: too large (not parsed), not an envelope, of
    /// another type, or data that does not fit are errors; another version is skipped, as on
    /// pub/sub. Otherwise the entry is decoded here, once, as on pub/sub.
    fn inspect_durable(&self, slot: &Slot, delivery: &mut Delivery) -> Result<(), DecodeError> {
        let (size, max) = (delivery.message.payload.len(), self.max_message_size);
        if size > max {
            return Err(DecodeError::TooLarge { size, max });
        }
        let ArgKind::Envelope {
            decode, event_type, ..
        } = slot.kind
        else {
            return Ok(());
        };
        let raw = Arc::new(RawEnvelope::parse(&delivery.message.payload)?);
        delivery.raw = Some(raw.clone());
        if raw.event_type() != event_type {
            let found = raw.event_type().to_owned();
            return Err(DecodeError::TypeMismatch {
                expected: event_type,
                found,
            });
        }
        if !accepts(slot, &raw) {
            slot.stats.skipped.fetch_add(1, Ordering::Relaxed);
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            delivery.verdict = Verdict::Skip;
            return Ok(());
        }
        let of_type = self.stats.of_type(event_type);
        of_type.received.fetch_add(1, Ordering::Relaxed);
        delivery.decoded = Some(decode(&raw)?);
        Ok(())
    }
}

/// How much of an oversized durable entry is kept, for its dead letter.
const OVERSIZED_KEPT: usize = 4 << 10;

/// The payload bytes a durable handler's queue holds before its reader stops: 16 MiB, or twice
/// `max_message_size` when that is more.
pub(crate) fn durable_byte_budget(max_message_size: usize) -> usize {
    (16 << 20).max(max_message_size.saturating_mul(2))
}

/// How many entries a durable handler's reader may read now. Nothing while the queue has less
/// than half its room free, or while its payloads fill more than half the byte budget (so reads
/// come in batches); then as many as fit in the room and in the budget left, counting each
/// entry as large as the largest of `max_message_size` and the entries read lately, and at
/// least one.
fn durable_credit(q: &Queue, max_message_size: usize) -> usize {
    let room = q.room_left();
    let budget = durable_byte_budget(max_message_size);
    let held = q.bytes();
    if room < q.refill_at() || held > budget / 2 {
        return 0;
    }
    let each = max_message_size.max(q.recent_largest()).max(1);
    room.min(((budget - held) / each).max(1))
}

fn needs_envelope(slot: &Slot) -> bool {
    matches!(slot.kind, ArgKind::Envelope { .. })
}

/// Whether a typed handler takes this envelope: its type, and its version when the envelope
/// states one. Envelopes of other types share topics legitimately (a shared or keyed channel,
/// a wide pattern): they are skipped, not failures. Untyped handlers take every envelope.
fn accepts(slot: &Slot, raw: &RawEnvelope) -> bool {
    match slot.kind {
        ArgKind::Envelope {
            event_type: "*", ..
        } => true,
        ArgKind::Envelope {
            event_type,
            version,
            ..
        } => {
            raw.event_type() == event_type
                && raw
                    .header()
                    .version()
                    .is_none_or(|v| version.is_none_or(|mine| mine == v))
        }
        ArgKind::Raw => false,
    }
}

impl Inbound for Router {
    fn message(&self, message: Message) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let Some(slots) = self.lookup(&message) else {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if message.ack.is_some() {
            // Read for one group: its handler alone takes it.
            return self.route_durable(&slots[0], message);
        }
        if message.payload.len() > self.max_message_size {
            let (size, max) = (message.payload.len(), self.max_message_size);
            self.decode_failed(&message, None, DecodeError::TooLarge { size, max });
            return;
        }
        let raw = if slots.iter().any(|s| needs_envelope(s)) {
            self.parse(&message, &slots)
        } else {
            None
        };
        let mut decoded = Decoded::default();
        let mut taken = false;
        for slot in slots.iter() {
            match (&slot.kind, &raw) {
                (ArgKind::Raw, _) => {
                    taken = true;
                    self.enqueue(
                        slot,
                        Delivery {
                            message: message.clone(),
                            raw: raw.clone(),
                            decoded: None,
                            verdict: Verdict::Run,
                        },
                    );
                }
                (ArgKind::Envelope { .. }, Some(raw)) if accepts(slot, raw) => {
                    taken = true;
                    self.route_typed(&message, raw, slot, &mut decoded);
                }
                (ArgKind::Envelope { .. }, Some(_)) => {
                    slot.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                (ArgKind::Envelope { .. }, None) => {}
            }
        }
        if !taken && raw.is_some() {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn credit(&self, group: &str) -> usize {
        let max = self.max_message_size;
        self.group(group)
            .map_or(0, |s| durable_credit(&s.queue, max))
    }

    fn credit_available(&self, group: &str) -> BoxFuture<'static, ()> {
        let slot = self.group(group);
        let max = self.max_message_size;
        Box::pin(async move {
            let Some(slot) = slot else { return };
            let q = &slot.queue;
            loop {
                let room = q.room.notified();
                if q.is_closed() || durable_credit(q, max) > 0 {
                    return;
                }
                room.await;
            }
        })
    }

    fn trimmed(&self, group: &str, entry_id: &str) {
        let Some(slot) = self.group(group) else {
            return;
        };
        slot.stats.trimmed.fetch_add(1, Ordering::Relaxed);
        self.hooks.report(Failure::Trimmed {
            handler: slot.name.clone(),
            entry_id: entry_id.to_owned(),
        });
    }

    fn connection(&self, event: ConnectionEvent) {
        if matches!(event, ConnectionEvent::Reconnected { .. }) {
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.hooks.connection(event);
    }
}
