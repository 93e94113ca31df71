//! Acknowledgements of one consumer group, and the entries this process holds. Acknowledgements
//! that arrive together (a busy handler, or a concurrent one) leave as one `XACK` with many ids,
//! so a consumer's rate is not bounded by one command per entry.
//!
//! Every entry handed to the bus carries a handle of its own ([`Acker::hold`]): the entry is
//! *held* from its delivery until it is acknowledged, or until the bus drops the last copy of
//! its handle without acknowledging it (a handler removed while the entry was queued, a
//! shutdown). Then the entry is *released*: it leaves the held set, so this process's own
//! re-read of its pending entries, or a claim by any consumer, delivers it again. Held entries
//! are kept fresh on the server (`keep_alive.rs`) and are never claimed back by this process.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::redis::errors;
use crate::redis::schedule::defer;
use crate::redis::shared::Shared;
use crate::sync::lock;
use crate::transport::{Acknowledge, BoxFuture, Deferred, ErrorKind, TransportError};

/// The most ids in one `XACK`.
const MAX_BATCH: usize = 512;

/// An entry to acknowledge, and where its outcome goes.
type Request = (String, oneshot::Sender<Result<(), (ErrorKind, String)>>);

/// Acknowledges entries of one group, and remembers which ones this process holds.
pub(super) struct Acker {
    requests: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
    stream: String,
    group: String,
    /// Entries read by this process and neither acknowledged nor released yet.
    held: Mutex<HashSet<String>>,
    /// Set when an entry was released: the reader re-reads its own pending entries.
    released: AtomicBool,
    /// Set once this group's retry queue is in the index of schedule queues.
    indexed: AtomicBool,
}

impl Acker {
    /// An acker for `group` on `stream`, with the task that sends its batches.
    pub(super) fn start(shared: &Arc<Shared>, stream: &str, group: &str) -> Arc<Acker> {
        let (requests, queue) = mpsc::unbounded_channel();
        let sender = Sender {
            shared: shared.clone(),
            stream: stream.to_owned(),
            group: group.to_owned(),
        };
        shared.spawn(sender.run(queue));
        Arc::new(Acker {
            requests,
            shared: shared.clone(),
            stream: stream.to_owned(),
            group: group.to_owned(),
            held: Mutex::default(),
            released: AtomicBool::new(false),
            indexed: AtomicBool::new(false),
        })
    }

    /// Holds `entry_id`: returns its acknowledgement handle, or `None` when it is held already
    /// (delivered to the bus and not finished).
    pub(super) fn hold(self: &Arc<Self>, entry_id: &str) -> Option<Arc<dyn Acknowledge>> {
        if !lock(&self.held).insert(entry_id.to_owned()) {
            return None;
        }
        Some(Arc::new(Held {
            acker: self.clone(),
            entry_id: entry_id.to_owned(),
        }))
    }

    /// Whether this process holds `entry_id`.
    pub(super) fn is_held(&self, entry_id: &str) -> bool {
        lock(&self.held).contains(entry_id)
    }

    /// The entries this process holds now.
    pub(super) fn held(&self) -> Vec<String> {
        lock(&self.held).iter().cloned().collect()
    }

    /// Releases `entry_id` if this process holds it: it stays pending, no longer held, and the
    /// reader re-reads this consumer's pending entries to deliver it again.
    fn release(&self, entry_id: &str) {
        if lock(&self.held).remove(entry_id) {
            tracing::debug!(entry = %entry_id, "a durable entry was released unacknowledged");
            self.released.store(true, Ordering::Release);
        }
    }

    /// Whether an entry was released since the last call.
    pub(super) fn take_released(&self) -> bool {
        self.released.swap(false, Ordering::AcqRel)
    }

    /// Hands a held entry off for a delayed retry (stored for later and acknowledged in one
    /// step); it is no longer held either way.
    async fn defer(&self, entry_id: &str, later: &Deferred) -> Result<(), TransportError> {
        let index = !self.indexed.load(Ordering::Acquire);
        let names = (self.stream.as_str(), self.group.as_str());
        let result = defer(&self.shared, names, entry_id, later, index).await;
        if result.is_ok() {
            self.indexed.store(true, Ordering::Release);
        }
        lock(&self.held).remove(entry_id);
        result
    }

    async fn ack(&self, entry_id: &str) -> Result<(), TransportError> {
        let (done, outcome) = oneshot::channel();
        let closed = || TransportError::new(ErrorKind::Closed, "the Redis transport is closed");
        let result = match self.requests.send((entry_id.to_owned(), done)) {
            Ok(()) => match outcome.await {
                Ok(result) => result.map_err(|(kind, message)| TransportError::new(kind, message)),
                Err(_) => Err(closed()),
            },
            Err(_) => Err(closed()),
        };
        // Acknowledged, or left pending by a failure: either way no longer held here.
        lock(&self.held).remove(entry_id);
        result
    }
}

/// The acknowledgement handle of one held entry; dropping its last copy without an
/// acknowledgement releases the entry.
struct Held {
    acker: Arc<Acker>,
    entry_id: String,
}

impl Acknowledge for Held {
    fn ack<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.acker.ack(entry_id))
    }

    fn release(&self, entry_id: &str) {
        self.acker.release(entry_id);
    }

    fn defer<'a>(
        &'a self,
        entry_id: &'a str,
        later: &'a Deferred,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.acker.defer(entry_id, later))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.acker.release(&self.entry_id);
    }
}

/// The task that sends what the acker queued, as few `XACK`s as it can.
struct Sender {
    shared: Arc<Shared>,
    stream: String,
    group: String,
}

impl Sender {
    /// Runs until every handle of the acker is gone.
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let outcome = self.send(&batch).await;
            for (_, done) in batch.drain(..) {
                let _ = done.send(outcome.clone());
            }
        }
    }

    /// One `XACK` of the batch's ids. While the connection is in trouble (lost, or no answer in
    /// time) it is sent again, with backoff, until it goes through: `XACK` is idempotent, and
    /// an acknowledgement given up would leave a finished entry pending, to run again on this
    /// live consumer. The entries stay held meanwhile (kept alive, never re-read here). It ends
    /// with the transport.
    async fn send(&self, batch: &[Request]) -> Result<(), (ErrorKind, String)> {
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        for (id, _) in batch {
            cmd.arg(id);
        }
        let s = &self.shared;
        let mut attempt = 0;
        loop {
            let sent = s
                .command::<u64>("acknowledging entries", &cmd, s.options.publish_deadline)
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::Timeout) => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "acknowledging entries again");
                    tokio::time::sleep(s.options.backoff_delay(attempt)).await;
                }
                Err(e) => return Err((e.kind(), errors::chain_text(&e))),
            }
        }
    }
}
