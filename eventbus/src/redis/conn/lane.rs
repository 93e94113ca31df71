//! The publish lane: a connection of the bus's own to a single server (over TCP or a unix
//! socket, without TLS), which carries the publish path's commands (`PUBLISH`, `XADD`, the
//! pipelines of `publish_all`) and the watchdog's `PING`, and nothing else.
//!
//! Callers hand it their commands' bytes (written by `publish::encode`) and wait for the
//! replies: one task writes whatever was queued since its last write in one `write_all`, and
//! another reads the replies (integers and entry ids by hand, see `resp_reply`) and answers
//! each caller once all of its replies are in. A burst of callers thus goes out as one write
//! without any task batching for them.
//!
//! The lane bounds the wait itself: a caller whose replies have not all arrived within the
//! response timeout of its command's write gets an error of kind
//! [`TimedOut`](io::ErrorKind::TimedOut), and so does every caller behind it; their replies,
//! should they come, are read and dropped, so the lane stays in step. This is one timer for
//! the whole lane, moved on at most once per timeout, instead of one per publish (see
//! `publish/mod.rs` for what that saves).
//!
//! The lane names itself [`NAME`] on the server.
//!
//! A lane ends when its socket fails or when the last handle to it is dropped (the connection
//! it belongs to was replaced): every caller still waiting then gets an I/O error, which the
//! publisher treats as a lost connection.

use std::collections::VecDeque;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use redis::{ConnectionAddr, ConnectionInfo, FromRedisValue, RedisError, RedisResult, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::redis::conn::resp_reply;
use crate::redis::publish::encode::Command;

/// The replies of one caller's commands, in order; the first error reply fails them.
type Replies = oneshot::Sender<RedisResult<Vec<Value>>>;

/// Commands written, or about to be, awaiting their replies.
struct Waiter {
    /// Replies still to come.
    count: usize,
    values: Vec<Value>,
    failed: Option<RedisError>,
    /// `None` once the caller was answered (timed out): the replies are then dropped.
    reply: Option<Replies>,
    written: Instant,
}

/// What callers queued since the writer's last write: their commands' bytes, one after
/// another, and their waiters in the same order.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    waiters: Vec<Waiter>,
    /// The writer was woken and has not yet found the queue empty.
    woken: bool,
    /// Every handle was dropped, or the writer ended: nothing more is taken.
    closed: bool,
}

/// What the callers and the writer share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the queue; the waiters still in it (never written) get `closed`.
    fn close(&self) {
        let waiters = {
            let mut q = self.lock();
            q.closed = true;
            q.bytes.clear();
            std::mem::take(&mut q.waiters)
        };
        fail(waiters, closed);
        self.wake.notify_one();
    }
}

/// Closes the lane when the last handle goes.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A handle to the lane; clones share it.
#[derive(Clone)]
pub(crate) struct Lane {
    handle: Arc<Handle>,
}

impl Lane {
    /// Opens a lane to the server `info` names, when it is reached without TLS: connects,
    /// authenticates and selects the database as redis-rs would; `timeout` bounds each wait
    /// for replies. `None` for a TLS address.
    pub(crate) async fn open(
        info: &ConnectionInfo,
        tasks: &TaskTracker,
        timeout: Duration,
    ) -> RedisResult<Option<Lane>> {
        let setup = setup_commands(info, NAME);
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                let (read, write) = stream.into_split();
                start(read, write, setup, tasks, timeout).await.map(Some)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let (read, write) = tokio::net::UnixStream::connect(path).await?.into_split();
                start(read, write, setup, tasks, timeout).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Whether `other` is a handle to the same lane.
    pub(crate) fn same(&self, other: &Lane) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }

    /// Sends a `PING` and waits for its answer.
    pub(crate) async fn ping(&self) -> RedisResult<()> {
        let ping = |out: &mut Vec<u8>| out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        self.send(ping, 1).await.map(drop)
    }

    /// Sends `cmds` and reads their replies as `T`s.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        cmds: &[Command<'_>],
    ) -> RedisResult<Vec<T>> {
        let write = |out: &mut Vec<u8>| cmds.iter().for_each(|c| c.write_resp(out));
        let replies = self.send(write, cmds.len()).await?;
        let values: Result<Vec<T>, _> = replies.into_iter().map(redis::from_redis_value).collect();
        Ok(values?)
    }

    /// Appends `count` commands to the queue with `write` (straight into the buffer the writer
    /// writes next), wakes the writer if it sleeps, and waits for their replies.
    async fn send(
        &self,
        write: impl FnOnce(&mut Vec<u8>),
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let (reply, replies) = oneshot::channel();
        let shared = &self.handle.0;
        let wake = {
            let mut q = shared.lock();
            if q.closed {
                return Err(closed());
            }
            write(&mut q.bytes);
            q.waiters.push(Waiter {
                count,
                values: Vec::with_capacity(count),
                failed: None,
                reply: Some(reply),
                written: Instant::now(),
            });
            !std::mem::replace(&mut q.woken, true)
        };
        if wake {
            shared.wake.notify_one();
        }
        replies.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// The error of commands whose lane closed before they were answered.
fn closed() -> RedisError {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the publish connection closed",
    )
    .into()
}

/// The error of commands not answered within the timeout.
fn timed_out(timeout: Duration) -> RedisError {
    let text = format!("no reply on the publish connection within {timeout:?}");
    io::Error::new(io::ErrorKind::TimedOut, text).into()
}

/// The name the lane gives itself, so that `CLIENT LIST` tells it apart.
pub(crate) const NAME: &str = "eventbus-publish";

/// The commands that set a new connection up, each with whether it must succeed: `AUTH` and
/// `SELECT` as the connection's settings ask, then `CLIENT SETNAME name` (a user whose ACL
/// denies it still gets a connection, unnamed).
pub(crate) fn setup_commands(info: &ConnectionInfo, name: &str) -> Vec<(redis::Cmd, bool)> {
    let settings = info.redis_settings();
    let mut cmds = Vec::new();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        cmds.push((auth.arg(password).clone(), true));
    }
    if settings.db() != 0 {
        cmds.push((redis::cmd("SELECT").arg(settings.db()).clone(), true));
    }
    cmds.push((redis::cmd("CLIENT").arg("SETNAME").arg(name).clone(), false));
    cmds
}

/// Runs the setup commands as one pipeline, then starts the writer and reader tasks (tracked
/// by `tasks`; both end when the lane is dropped or its socket fails).
async fn start<R, W>(
    read: R,
    mut write: W,
    setup: Vec<(redis::Cmd, bool)>,
    tasks: &TaskTracker,
    timeout: Duration,
) -> RedisResult<Lane>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = Reader {
        read,
        buf: BytesMut::with_capacity(16 * 1024),
    };
    let bytes: Vec<u8> = setup
        .iter()
        .flat_map(|(c, _)| c.get_packed_command())
        .collect();
    write.write_all(&bytes).await?;
    for (_, must) in &setup {
        match reader.next().await? {
            Err(e) if *must => return Err(e),
            _ => {}
        }
    }
    let shared = Arc::new(Shared::default());
    let (waiting, answers) = mpsc::unbounded_channel();
    tasks.spawn(write_all(write, shared.clone(), waiting));
    tasks.spawn(reader.answer(answers, timeout));
    Ok(Lane {
        handle: Arc::new(Handle(shared)),
    })
}

/// Writes whatever the callers queued since the last write in one write, and hands their
/// waiters to the reader, stamped, in the order they went out (before the write, so that a
/// write that never completes is bounded by the reader's timeout too). Ends when the lane is
/// dropped or a write fails (closing the queue).
async fn write_all<W: AsyncWrite + Unpin>(
    mut write: W,
    shared: Arc<Shared>,
    waiting: mpsc::UnboundedSender<Vec<Waiter>>,
) {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut waiters = Vec::new();
    loop {
        {
            let mut q = shared.lock();
            if q.closed {
                return;
            }
            if q.waiters.is_empty() {
                q.woken = false;
            } else {
                std::mem::swap(&mut q.bytes, &mut out);
                std::mem::swap(&mut q.waiters, &mut waiters);
            }
        }
        if waiters.is_empty() {
            shared.wake.notified().await;
            continue;
        }
        let written = Instant::now();
        waiters.iter_mut().for_each(|w| w.written = written);
        let capacity = waiters.capacity();
        let batch = std::mem::replace(&mut waiters, Vec::with_capacity(capacity));
        if waiting.send(batch).is_err() || write.write_all(&out).await.is_err() {
            return shared.close();
        }
        out.clear();
    }
}

/// The read half and what has been read but not yet taken.
struct Reader<R> {
    read: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next reply: `Err` when the socket failed or sent bytes that are no reply (the lane
    /// ends then), `Ok(Err)` for an error reply. For the setup commands only.
    async fn next(&mut self) -> RedisResult<RedisResult<Value>> {
        loop {
            if let Some(reply) = self.take()? {
                return Ok(reply);
            }
            self.fill().await?;
        }
    }

    /// The next whole reply read so far, if any; `Err` for bytes that are no reply.
    fn take(&mut self) -> RedisResult<Option<RedisResult<Value>>> {
        match resp_reply::take(&mut self.buf) {
            Some(Err(e)) if e.kind() == redis::ErrorKind::Parse => {
                let text = format!("the server sent what is no reply: {e}");
                Err(io::Error::new(io::ErrorKind::ConnectionAborted, text).into())
            }
            reply => Ok(reply),
        }
    }

    /// Reads what the socket has; `Err` when it failed or the server closed it.
    async fn fill(&mut self) -> RedisResult<()> {
        if self.read.read_buf(&mut self.buf).await? == 0 {
            let text = "the server closed the publish connection";
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, text).into());
        }
        Ok(())
    }

    /// Hands every whole reply read so far to the waiter it belongs to, answering each once
    /// its replies are in; `dead` counts the waiters at the front already answered.
    fn hand_out(&mut self, waiting: &mut VecDeque<Waiter>, dead: &mut usize) -> RedisResult<()> {
        while let Some(front) = waiting.front_mut() {
            match self.take()? {
                None => return Ok(()),
                Some(Ok(value)) => front.values.push(value),
                Some(Err(e)) => front.failed = front.failed.take().or(Some(e)),
            }
            front.count -= 1;
            if front.count > 0 {
                continue;
            }
            let Some(done) = waiting.pop_front() else {
                break;
            };
            *dead = dead.saturating_sub(1);
            if let Some(reply) = done.reply {
                let _ = reply.send(done.failed.map_or(Ok(done.values), Err));
            }
        }
        Ok(())
    }

    /// Answers the waiters, in the order they were written, once their replies are in; fails
    /// every waiter not answered within `timeout` of its write. Ends when the lane is
    /// dropped or its socket fails (failing every waiter).
    async fn answer(
        mut self,
        mut answers: mpsc::UnboundedReceiver<Vec<Waiter>>,
        timeout: Duration,
    ) {
        let mut waiting = VecDeque::new();
        let mut dead = 0;
        let mut alarm = pin!(tokio::time::sleep(timeout));
        loop {
            // Every waiter whose commands were written is in `answers` before their replies
            // can arrive: take them all before handing out what was read.
            while let Ok(batch) = answers.try_recv() {
                waiting.extend(batch);
            }
            if let Err(e) = self.hand_out(&mut waiting, &mut dead) {
                return fail(waiting, || io_copy(&e));
            }
            let due = waiting.get(dead).map(|w| w.written + timeout);
            tokio::select! {
                biased;
                read = self.fill(), if !waiting.is_empty() => {
                    if let Err(e) = read {
                        return fail(waiting, || io_copy(&e));
                    }
                }
                w = answers.recv(), if due.is_none() => match w {
                    Some(batch) => waiting.extend(batch),
                    // The lane was dropped or its writer failed, and nobody waits.
                    None => return,
                },
                () = &mut alarm, if due.is_some() => {
                    let due = due.unwrap_or_else(Instant::now);
                    if Instant::now() < due {
                        alarm.as_mut().reset(due);
                        continue;
                    }
                    for w in waiting.iter_mut().skip(dead) {
                        if let Some(reply) = w.reply.take() {
                            let _ = reply.send(Err(timed_out(timeout)));
                        }
                    }
                    dead = waiting.len();
                }
            }
        }
    }
}

/// The error of a lost socket `e`, for each waiter the failure reaches: a dropped
/// connection, whatever `e` was, so the publisher replaces it.
fn io_copy(e: &RedisError) -> RedisError {
    io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()).into()
}

/// Answers every waiter still waiting with `error()`.
fn fail(waiting: impl IntoIterator<Item = Waiter>, error: impl Fn() -> RedisError) {
    for w in waiting {
        if let Some(reply) = w.reply {
            let _ = reply.send(Err(error()));
        }
    }
}
