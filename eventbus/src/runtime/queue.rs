//! A handler's bounded queue: the reader pushes without ever waiting, the worker pops.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::handler::Delivery;
use crate::options::Overflow;
use crate::sync::lock;

/// A bounded queue that never blocks the producer.
pub(crate) struct Queue {
    items: Mutex<QueueState>,
    notify: Notify,
    /// Woken when an item is taken: credit for an at-least-once transport.
    pub(crate) room: Notify,
    pub(crate) capacity: usize,
    overflow: Overflow,
}

struct QueueState {
    items: VecDeque<Delivery>,
    /// The payload bytes of the queued items.
    bytes: usize,
    /// The largest payload seen lately, as read (before an oversized one was cut down): it
    /// decays by an eighth with each smaller one.
    recent_largest: usize,
    closed: bool,
}

fn size_of(item: &Delivery) -> usize {
    item.message.payload.len()
}

/// What a look at the front of the queue found.
enum Taken {
    Item(Delivery),
    Empty,
    Closed,
}

/// What became of a pushed item.
pub(crate) enum Pushed {
    Queued,
    /// The queue was full; this item was dropped by the overflow policy.
    Dropped(Delivery),
    /// The queue was closed; the item is handed back.
    Closed(Delivery),
}

impl Queue {
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Self {
        Queue {
            items: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.min(1024)),
                bytes: 0,
                recent_largest: 0,
                closed: false,
            }),
            notify: Notify::new(),
            room: Notify::new(),
            capacity,
            overflow,
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        lock(&self.items)
    }

    /// Adds an item, unless the queue is closed; a full queue drops by its policy.
    pub(crate) fn push(&self, item: Delivery) -> Pushed {
        let (pushed, was_empty) = {
            let mut q = self.state();
            if q.closed {
                return Pushed::Closed(item);
            }
            let was_empty = q.items.is_empty();
            let size = size_of(&item);
            let pushed = if q.items.len() < self.capacity {
                q.items.push_back(item);
                q.bytes += size;
                Pushed::Queued
            } else {
                match self.overflow {
                    Overflow::DropNewest => Pushed::Dropped(item),
                    Overflow::DropOldest => {
                        let old = q.items.pop_front();
                        q.bytes -= old.as_ref().map_or(0, size_of);
                        q.items.push_back(item);
                        q.bytes += size;
                        old.map_or(Pushed::Queued, Pushed::Dropped)
                    }
                }
            };
            (pushed, was_empty)
        };
        // The worker looks at the queue before it waits, so only the first item needs a wakeup.
        if was_empty {
            self.notify.notify_one();
        }
        pushed
    }

    /// The next item; `None` once closed and empty.
    pub(crate) async fn pop(&self) -> Option<Delivery> {
        loop {
            match self.take() {
                Taken::Item(item) => return Some(item),
                Taken::Closed => return None,
                Taken::Empty => self.notify.notified().await,
            }
        }
    }

    /// The next item if one is queued, without waiting.
    pub(crate) fn try_pop(&self) -> Option<Delivery> {
        match self.take() {
            Taken::Item(item) => Some(item),
            Taken::Closed | Taken::Empty => None,
        }
    }

    /// Takes the first item; or says, under the same lock, why there is none.
    fn take(&self) -> Taken {
        let mut q = self.state();
        let Some(item) = q.items.pop_front() else {
            return if q.closed {
                Taken::Closed
            } else {
                Taken::Empty
            };
        };
        q.bytes -= size_of(&item);
        drop(q);
        self.room.notify_waiters();
        Taken::Item(item)
    }

    /// Refuses new items; the worker empties what is queued, then stops.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.notify.notify_one();
        self.room.notify_waiters();
    }

    /// How many more items fit.
    pub(crate) fn room_left(&self) -> usize {
        let q = self.state();
        if q.closed {
            0
        } else {
            self.capacity.saturating_sub(q.items.len())
        }
    }

    /// Whether the queue refuses new items.
    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// The room an at-least-once reader waits for before reading again: half the queue, so
    /// that it reads in batches rather than one entry per freed place.
    pub(crate) fn refill_at(&self) -> usize {
        (self.capacity / 2).max(1)
    }

    pub(crate) fn len(&self) -> usize {
        self.state().items.len()
    }

    /// Drops everything queued; returns how many items that was.
    pub(crate) fn clear(&self) -> usize {
        let mut q = self.state();
        let n = q.items.len();
        q.items.clear();
        q.bytes = 0;
        n
    }

    /// The payload bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.state().bytes
    }

    /// Notes the size of an entry as it was read, before it is pushed (cut down or not).
    pub(crate) fn note_read_size(&self, size: usize) {
        let mut q = self.state();
        let decayed = q.recent_largest - q.recent_largest / 8;
        q.recent_largest = size.max(decayed);
    }

    /// The largest entry read lately (see [`note_read_size`](Self::note_read_size)).
    pub(crate) fn recent_largest(&self) -> usize {
        self.state().recent_largest
    }
}
