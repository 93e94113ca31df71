//! The publish lane: a connection of the bus's own to a single server (over TCP or a unix
//! socket, without TLS), which carries the batcher's `PUBLISH` pipelines and nothing else.
//!
//! redis-rs's multiplexed connection turns each pipeline into commands, packs them, hands them
//! to its driver task and parses every reply into a general value. The lane takes the
//! pipeline's bytes as the batcher wrote them: one task writes whatever was queued since its
//! last write in one `write_all`, another reads the replies (an integer each, read by hand)
//! and answers each pipeline once all of its replies are in. The multiplexed connection
//! stays for every other command and for the watchdog's `PING`.
//!
//! The lane names itself [`NAME`] on the server; the publisher's watchdog pings it as it pings
//! the multiplexed connection.
//!
//! A lane ends when its socket fails or when the last handle to it is dropped (the connection
//! it belongs to was replaced): every pipeline still waiting then gets an I/O error, which the
//! publisher treats as a lost connection.

use std::io;

use bytes::{Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo, FromRedisValue, RedisError, RedisResult, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::redis::conn::resp_reply;

/// The replies of one pipeline, in order; the first error reply fails it.
type Replies = oneshot::Sender<RedisResult<Vec<Value>>>;

/// A pipeline on its way: its bytes, how many replies it awaits, and where they go.
struct Pipeline {
    bytes: Bytes,
    count: usize,
    reply: Replies,
}

/// A handle to the lane; clones share it.
#[derive(Clone)]
pub(crate) struct Lane {
    pipelines: mpsc::UnboundedSender<Pipeline>,
}

impl Lane {
    /// Opens a lane to the server `info` names, when it is reached without TLS: connects,
    /// authenticates and selects the database as redis-rs would. `None` for a TLS address.
    pub(crate) async fn open(
        info: &ConnectionInfo,
        tasks: &TaskTracker,
    ) -> RedisResult<Option<Lane>> {
        let setup = setup_commands(info);
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                let (read, write) = stream.into_split();
                start(read, write, setup, tasks).await.map(Some)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let (read, write) = tokio::net::UnixStream::connect(path).await?.into_split();
                start(read, write, setup, tasks).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Sends a `PING` and waits for its answer.
    pub(crate) async fn ping(&self) -> RedisResult<()> {
        self.send(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"), 1)
            .await
            .map(drop)
    }

    /// Sends `bytes`, `count` commands, and reads their replies as `T`s.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        bytes: Bytes,
        count: usize,
    ) -> RedisResult<Vec<T>> {
        let replies = self.send(bytes, count).await?;
        let values: Result<Vec<T>, _> = replies.into_iter().map(redis::from_redis_value).collect();
        Ok(values?)
    }

    /// Sends `bytes`, `count` commands, and waits for their replies.
    async fn send(&self, bytes: Bytes, count: usize) -> RedisResult<Vec<Value>> {
        let (reply, replies) = oneshot::channel();
        let pipeline = Pipeline {
            bytes,
            count,
            reply,
        };
        if self.pipelines.send(pipeline).is_err() {
            return Err(closed());
        }
        replies.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// The error of a pipeline whose lane closed before it was answered.
fn closed() -> RedisError {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the publish connection closed",
    )
    .into()
}

/// The name the lane gives itself, so that `CLIENT LIST` tells it apart.
pub(crate) const NAME: &str = "eventbus-publish";

/// The commands that set a new connection up, each with whether it must succeed: `AUTH` and
/// `SELECT` as the connection's settings ask, then `CLIENT SETNAME` (a user whose ACL denies
/// it still gets a lane, unnamed).
fn setup_commands(info: &ConnectionInfo) -> Vec<(redis::Cmd, bool)> {
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
    cmds.push((redis::cmd("CLIENT").arg("SETNAME").arg(NAME).clone(), false));
    cmds
}

/// Runs the setup commands as one pipeline, then starts the writer and reader tasks (tracked
/// by `tasks`; both end when the lane is dropped or its socket fails).
async fn start<R, W>(
    read: R,
    mut write: W,
    setup: Vec<(redis::Cmd, bool)>,
    tasks: &TaskTracker,
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
    let (pipelines, queued) = mpsc::unbounded_channel();
    let (waiting, answers) = mpsc::unbounded_channel();
    tasks.spawn(write_all(write, queued, waiting));
    tasks.spawn(reader.answer(answers));
    Ok(Lane { pipelines })
}

/// Writes every pipeline queued since the last write in one write, and hands each one's reply
/// slot to the reader in the order they went out. Ends when the lane is dropped or a write
/// fails (the slots still held then get an I/O error as they are dropped).
async fn write_all<W: AsyncWrite + Unpin>(
    mut write: W,
    mut queued: mpsc::UnboundedReceiver<Pipeline>,
    waiting: mpsc::UnboundedSender<(usize, Replies)>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        while let Some(p) = next {
            buf.extend_from_slice(&p.bytes);
            if waiting.send((p.count, p.reply)).is_err() {
                return;
            }
            next = queued.try_recv().ok();
        }
        if write.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

/// The read half and what has been read but not yet taken.
struct Reader<R> {
    read: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next reply: `Err` when the socket failed or sent bytes that are no reply (the lane
    /// ends then), `Ok(Err)` for an error reply.
    async fn next(&mut self) -> RedisResult<RedisResult<Value>> {
        loop {
            match resp_reply::take(&mut self.buf) {
                Some(Err(e)) if e.kind() == redis::ErrorKind::Parse => {
                    let text = format!("the server sent what is no reply: {e}");
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, text).into());
                }
                Some(reply) => return Ok(reply),
                None => {}
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                let text = "the server closed the publish connection";
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, text).into());
            }
        }
    }

    /// Answers each pipeline, in the order they were written, once its replies are in.
    async fn answer(mut self, mut answers: mpsc::UnboundedReceiver<(usize, Replies)>) {
        while let Some((count, reply)) = answers.recv().await {
            let mut values = Vec::with_capacity(count);
            let mut failed = None;
            for _ in 0..count {
                match self.next().await {
                    Ok(Ok(value)) => values.push(value),
                    Ok(Err(e)) => failed = failed.or(Some(e)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
            }
            let _ = reply.send(failed.map_or(Ok(values), Err));
        }
    }
}
