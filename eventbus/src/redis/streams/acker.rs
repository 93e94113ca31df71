//! Acknowledgements of one consumer group. Acknowledgements that arrive together (a busy
//! handler, or a concurrent one) leave as one `XACK` with many ids, so a consumer's rate is not
//! bounded by one command per entry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::redis::errors;
use crate::redis::shared::Shared;
use crate::sync::lock;
use crate::transport::{Acknowledge, BoxFuture, ErrorKind, TransportError};

/// The most ids in one `XACK`.
const MAX_BATCH: usize = 512;

/// An entry to acknowledge, and where its outcome goes.
type Request = (String, oneshot::Sender<Result<(), (ErrorKind, String)>>);

/// Acknowledges entries of one group, and remembers which ones this process holds.
pub(super) struct Acker {
    requests: mpsc::UnboundedSender<Request>,
    /// Entries read by this process and not acknowledged yet: never claimed back by it.
    pub(super) held: Mutex<HashSet<String>>,
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
            held: Mutex::default(),
        })
    }
}

impl Acknowledge for Acker {
    fn ack<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let (done, outcome) = oneshot::channel();
            let closed = || TransportError::new(ErrorKind::Closed, "the Redis transport is closed");
            let result = match self.requests.send((entry_id.to_owned(), done)) {
                Ok(()) => match outcome.await {
                    Ok(result) => {
                        result.map_err(|(kind, message)| TransportError::new(kind, message))
                    }
                    Err(_) => Err(closed()),
                },
                Err(_) => Err(closed()),
            };
            lock(&self.held).remove(entry_id);
            result
        })
    }

    fn release(&self, entry_id: &str) {
        // Pending, and no longer held: the reader claims it back once it is idle.
        lock(&self.held).remove(entry_id);
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
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&self.stream).arg(&self.group);
            for (id, _) in &batch {
                cmd.arg(id);
            }
            let s = &self.shared;
            let outcome = s
                .command::<u64>("acknowledging entries", &cmd, s.options.publish_deadline)
                .await
                .map(|_| ())
                .map_err(|e| (e.kind(), errors::chain_text(&e)));
            for (_, done) in batch.drain(..) {
                let _ = done.send(outcome.clone());
            }
        }
    }
}
