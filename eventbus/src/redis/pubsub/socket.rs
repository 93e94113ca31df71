//! The subscriber's own connection to a single server reached without TLS (over TCP or a unix
//! socket): the bus writes `SUBSCRIBE`, `PSUBSCRIBE`, their `UN`s and `PING` itself and reads
//! what the server sends by hand, in a task that hands each message straight to the bus.
//!
//! A message is read where it lies in the read buffer, its channel name the one shared
//! `Arc<str>` of [`Names`], its payload copied once; nothing sits between the socket and the
//! bus's router. Measured with `bench --receive-rows` (CPU per message, redis-benchmark
//! publishing the bus's envelope): a counting subscriber written this way costs 0.44× what
//! redis-rs's pub/sub connection costs for the same messages; see `docs/benchmarks.md` for
//! the bus.
//!
//! Replies that are not messages (a subscription's confirmations, one per channel or
//! pattern; `pong`; an error) answer the commands in the order they were written: a command
//! is answered once all its confirmations are in, or at its first error. The connection speaks
//! RESP2 and names itself [`NAME`]. It ends when the server closes it, sends what is no reply,
//! or when its [`Reading`] is dropped; every command still waiting then gets an I/O error, and
//! so does every later one.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo, RedisError, RedisResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::redis::conn::lane::setup_commands;
use crate::redis::conn::resp_reply;
use crate::redis::pubsub::names::Names;
use crate::transport::{Inbound, Message};

/// The name the connection gives itself, so that `CLIENT LIST` tells it apart.
pub(crate) const NAME: &str = "eventbus-subscribe";

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A command written and not yet answered: how many confirmations it still awaits.
struct Waiter {
    remaining: usize,
    reply: oneshot::Sender<RedisResult<()>>,
}

/// What the command side and the reading task share.
struct Shared {
    /// The write half; held while a command is queued and written, so that the waiters are
    /// in the order the commands went out.
    write: tokio::sync::Mutex<Writer>,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    queue: VecDeque<Waiter>,
    /// The reading ended: no command is answered any more.
    closed: bool,
}

impl Shared {
    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers the command at the front with one confirmation, or fails it with an error.
    fn confirm(&self, reply: RedisResult<()>) {
        let mut w = self.waiters();
        let Some(front) = w.queue.front_mut() else {
            return;
        };
        front.remaining = front.remaining.saturating_sub(1);
        if (reply.is_err() || front.remaining == 0)
            && let Some(done) = w.queue.pop_front()
        {
            let _ = done.reply.send(reply);
        }
    }

    /// Ends the connection for commands: those waiting, and any later, fail.
    fn close(&self) {
        let waiting = {
            let mut w = self.waiters();
            w.closed = true;
            std::mem::take(&mut w.queue)
        };
        for waiter in waiting {
            let _ = waiter.reply.send(Err(closed()));
        }
    }
}

/// The command side of the connection; clones share it.
#[derive(Clone)]
pub(crate) struct Commands {
    shared: Arc<Shared>,
}

impl Commands {
    /// Writes `verb` with `args` and waits for `confirmations` replies (one per argument for
    /// the subscription commands, one for `PING`).
    pub(crate) async fn send(
        &self,
        verb: &str,
        args: &[String],
        confirmations: usize,
    ) -> RedisResult<()> {
        let mut cmd = redis::cmd(verb);
        args.iter().for_each(|a| {
            cmd.arg(a);
        });
        let bytes = cmd.get_packed_command();
        let (reply, answer) = oneshot::channel();
        {
            let mut write = self.shared.write.lock().await;
            {
                let mut w = self.shared.waiters();
                if w.closed {
                    return Err(closed());
                }
                w.queue.push_back(Waiter {
                    remaining: confirmations.max(1),
                    reply,
                });
            }
            write.write_all(&bytes).await?;
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// The reading side: while it is held, a task reads the connection; dropping it ends the
/// task. [`ended`](Self::ended) says why the connection ended.
pub(crate) struct Reading {
    ended: oneshot::Receiver<String>,
    _stop: DropGuard,
}

impl Reading {
    /// Waits until the connection ends; why it did.
    pub(crate) async fn ended(&mut self) -> String {
        (&mut self.ended)
            .await
            .unwrap_or_else(|_| "the subscriber connection closed".to_owned())
    }
}

/// Opens the connection `info` names, sets it up (`AUTH` as the settings ask, `CLIENT
/// SETNAME`) and starts reading it into `inbound` in a task tracked by `tasks`. `None` for a
/// TLS address.
pub(crate) async fn open(
    info: &ConnectionInfo,
    inbound: Arc<dyn Inbound>,
    tasks: &TaskTracker,
) -> RedisResult<Option<(Commands, Reading)>> {
    let opened = match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            stream.set_nodelay(true)?;
            let (read, write) = stream.into_split();
            start(Box::new(read), Box::new(write), info, inbound, tasks).await?
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => {
            let (read, write) = tokio::net::UnixStream::connect(path).await?.into_split();
            start(Box::new(read), Box::new(write), info, inbound, tasks).await?
        }
        _ => return Ok(None),
    };
    Ok(Some(opened))
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;

async fn start(
    mut read: Reader,
    mut write: Writer,
    info: &ConnectionInfo,
    inbound: Arc<dyn Inbound>,
    tasks: &TaskTracker,
) -> RedisResult<(Commands, Reading)> {
    let setup = setup_commands(info, NAME);
    let bytes: Vec<u8> = setup
        .iter()
        .flat_map(|(c, _)| c.get_packed_command())
        .collect();
    write.write_all(&bytes).await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for (_, must) in &setup {
        let reply = loop {
            match resp_reply::take(&mut buf) {
                Some(reply) => break reply,
                None => fill(&mut read, &mut buf).await?,
            }
        };
        match reply {
            Err(e) if *must || e.kind() == redis::ErrorKind::Parse => return Err(e),
            _ => {}
        }
    }
    let shared = Arc::new(Shared {
        write: tokio::sync::Mutex::new(write),
        waiters: Mutex::default(),
    });
    let stop = CancellationToken::new();
    let (end, ended) = oneshot::channel();
    let reader = Read {
        read,
        buf,
        shared: shared.clone(),
        inbound,
        names: Names::default(),
    };
    let cancelled = stop.clone();
    tasks.spawn(async move {
        let why = tokio::select! {
            _ = cancelled.cancelled() => "the subscriber connection was replaced".to_owned(),
            why = reader.run() => why,
        };
        let _ = end.send(why);
    });
    Ok((
        Commands { shared },
        Reading {
            ended,
            _stop: stop.drop_guard(),
        },
    ))
}

/// Reads what the socket has into `buf`; an error when it failed or the server closed it.
async fn fill(read: &mut Reader, buf: &mut BytesMut) -> RedisResult<()> {
    buf.reserve(16 * 1024);
    if read.read_buf(buf).await? == 0 {
        let text = "the server closed the subscriber connection";
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, text).into());
    }
    Ok(())
}

/// The reading task's state.
struct Read {
    read: Reader,
    buf: BytesMut,
    shared: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    names: Names,
}

impl Read {
    /// Reads until the connection ends; why it did. Commands still waiting then fail.
    async fn run(mut self) -> String {
        let why = loop {
            if let Err(e) = self.hand_out() {
                break e;
            }
            // The handlers' tasks this read woke wait in this thread's next-task slot, which
            // no other thread takes: without a yield they would wait until tokio's budget
            // stops the reading, some hundred reads later, while their queues fill.
            tokio::task::yield_now().await;
            if let Err(e) = fill(&mut self.read, &mut self.buf).await {
                break crate::redis::errors::redis_text(&e);
            }
        };
        self.shared.close();
        why
    }

    /// Hands every whole reply read so far to the bus (a message) or to the command it
    /// answers; `Err` for bytes that are no reply.
    fn hand_out(&mut self) -> Result<(), String> {
        loop {
            let len = match resp_reply::reply_len(&self.buf) {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("the server sent what is no reply: {e}")),
            };
            let message = handle(&self.buf[..len], &self.shared, &mut self.names);
            if let Some(message) = message {
                self.inbound.message(message);
            }
            self.buf.advance(len);
        }
    }
}

/// One whole reply: a message for the bus, or the answer to a command.
///
/// The payload is copied out of the read buffer: a slice of it would keep the whole buffer
/// (16 KiB or more) alive while a slow handler holds the message; copied, the buffer is
/// reused in place.
fn handle(frame: &[u8], shared: &Shared, names: &mut Names) -> Option<Message> {
    match frame[0] {
        b'*' => match push_parts(frame) {
            Some(Push::Message {
                pattern,
                channel,
                payload,
            }) => {
                let channel = names.get_bytes(&frame[channel]);
                let pattern = pattern.map(|p| names.get_bytes(&frame[p]));
                let payload = Bytes::copy_from_slice(&frame[payload]);
                return Some(Message::new(channel, pattern, payload));
            }
            Some(Push::Confirmation) | None => shared.confirm(Ok(())),
        },
        b'-' => {
            let e = redis::parse_redis_value(frame).and_then(|v| v.extract_error());
            shared.confirm(Err(e.err().unwrap_or_else(closed)));
        }
        _ => shared.confirm(Ok(())),
    }
    None
}

/// What an array from the server is.
#[derive(Debug, PartialEq)]
enum Push {
    /// `message channel payload` or `pmessage pattern channel payload`: where each part lies
    /// in the frame.
    Message {
        pattern: Option<std::ops::Range<usize>>,
        channel: std::ops::Range<usize>,
        payload: std::ops::Range<usize>,
    },
    /// Anything else: a confirmation (`subscribe`, `unsubscribe`, …, `pong`).
    Confirmation,
}

/// Reads the parts of a whole array frame; `None` when they are not all bulk strings or
/// integers.
fn push_parts(frame: &[u8]) -> Option<Push> {
    let mut at = frame.iter().position(|b| *b == b'\n')? + 1;
    let mut parts: [std::ops::Range<usize>; 4] = Default::default();
    let mut count = 0;
    while at < frame.len() {
        let line = frame[at..].iter().position(|b| *b == b'\n')? + at + 1;
        let part = if frame[at] == b'$' {
            let n: i64 = std::str::from_utf8(&frame[at + 1..line - 2])
                .ok()?
                .parse()
                .ok()?;
            // A nil (`$-1`) is an empty part.
            let n = usize::try_from(n).unwrap_or(0);
            let part = line..line + n;
            at = if n == 0 && frame[at + 1] == b'-' {
                line
            } else {
                line + n + 2
            };
            part
        } else {
            let part = at + 1..line - 2;
            at = line;
            part
        };
        if count < parts.len() {
            parts[count] = part;
        }
        count += 1;
    }
    let [kind, a, b, c] = parts;
    Some(match (&frame[kind], count) {
        (b"message", 3) => Push::Message {
            pattern: None,
            channel: a,
            payload: b,
        },
        (b"pmessage", 4) => Push::Message {
            pattern: Some(a),
            channel: b,
            payload: c,
        },
        _ => Push::Confirmation,
    })
}

/// The error of commands on a connection that ended.
fn closed() -> RedisError {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the subscriber connection closed",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part<'a>(frame: &'a [u8], r: &std::ops::Range<usize>) -> &'a [u8] {
        &frame[r.clone()]
    }

    #[test]
    fn messages_and_confirmations_are_told_apart() {
        let frame = b"*3\r\n$7\r\nmessage\r\n$8\r\nevents:a\r\n$5\r\nhe\r\no\r\n";
        let Some(Push::Message {
            pattern,
            channel,
            payload,
        }) = push_parts(frame)
        else {
            panic!("a message");
        };
        assert_eq!(pattern, None);
        assert_eq!(part(frame, &channel), b"events:a");
        assert_eq!(part(frame, &payload), b"he\r\no");

        let frame = b"*4\r\n$8\r\npmessage\r\n$8\r\nevents:*\r\n$8\r\nevents:b\r\n$0\r\n\r\n";
        let Some(Push::Message {
            pattern,
            channel,
            payload,
        }) = push_parts(frame)
        else {
            panic!("a pattern message");
        };
        assert_eq!(part(frame, &pattern.unwrap()), b"events:*");
        assert_eq!(part(frame, &channel), b"events:b");
        assert_eq!(part(frame, &payload), b"");

        for confirmation in [
            &b"*3\r\n$9\r\nsubscribe\r\n$8\r\nevents:a\r\n:1\r\n"[..],
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        ] {
            assert_eq!(push_parts(confirmation), Some(Push::Confirmation));
        }
    }

    #[test]
    fn waiters_are_answered_in_order_once_confirmed() {
        let (_, write) = tokio::io::duplex(64);
        let shared = Shared {
            write: tokio::sync::Mutex::new(Box::new(write)),
            waiters: Mutex::default(),
        };
        let (two, mut two_rx) = oneshot::channel();
        let (one, mut one_rx) = oneshot::channel();
        shared.waiters().queue.extend([
            Waiter {
                remaining: 2,
                reply: two,
            },
            Waiter {
                remaining: 1,
                reply: one,
            },
        ]);
        shared.confirm(Ok(()));
        assert!(two_rx.try_recv().is_err(), "one of two confirmations");
        shared.confirm(Ok(()));
        assert!(two_rx.try_recv().unwrap().is_ok());
        shared.confirm(Err(closed()));
        assert!(one_rx.try_recv().unwrap().is_err());
        shared.close();
        assert!(shared.waiters().closed);
    }
}
