//! What every part of one Redis transport shares: where it connects, its options, the bus it
//! delivers to, the command connection, and the tasks it runs.
//!
//! Every task the transport starts is spawned through [`Shared::spawn`]: it is tracked
//! (closing waits for it) and ends when the transport is closed or dropped, whatever it was
//! waiting for. Nothing is kept per task once it has ended.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::{Cmd, FromRedisValue, RedisResult};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::redis::RedisOptions;
use crate::redis::conn::connection::Conn;
use crate::redis::conn::link::{self, Link, Unavailable};
use crate::redis::errors;
use crate::redis::publish::encode::Command;
use crate::redis::target::Target;
use crate::transport::{ConnectionEvent, ErrorKind, Inbound, TransportError};

/// What the transport's parts and tasks share.
pub(crate) struct Shared {
    /// The runtime the transport's tasks run on.
    pub(crate) runtime: tokio::runtime::Id,
    pub(crate) target: Target,
    pub(crate) options: RedisOptions,
    pub(crate) inbound: Arc<dyn Inbound>,
    /// Cancelled when the transport closes: every task ends.
    pub(crate) cancel: CancellationToken,
    closed: AtomicBool,
    tasks: TaskTracker,
    /// The command connection (the publisher's): every command that is not pub/sub or a
    /// group's read runs on it.
    pub(crate) commands: watch::Sender<Link<Conn>>,
    /// Bounds the commands (publishes included) queued or awaiting an answer on the command
    /// connection: `max_in_flight` permits.
    pub(crate) in_flight: Arc<Semaphore>,
}

impl Shared {
    /// The shared state of a transport whose command connection `conn` is up.
    pub(crate) fn new(
        target: Target,
        options: &RedisOptions,
        inbound: Arc<dyn Inbound>,
        conn: Conn,
        tasks: TaskTracker,
    ) -> Shared {
        Shared {
            runtime: tokio::runtime::Handle::current().id(),
            target,
            options: options.clone(),
            inbound,
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            tasks,
            commands: watch::Sender::new(Link::Up { conn, epoch: 1 }),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
        }
    }

    /// Fails when the transport is closed.
    pub(crate) fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TransportError::new(
                ErrorKind::Closed,
                "the Redis transport is closed",
            ))
        } else {
            Ok(())
        }
    }

    /// Marks the transport closed and cancels its tasks; false when it already was.
    pub(crate) fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        self.cancel.cancel();
        self.tasks.close();
        first
    }

    /// Waits up to `within` for every task to end (after [`close`](Self::close)).
    pub(crate) async fn tasks_ended(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.tasks.wait()).await;
    }

    /// The tracker of the transport's tasks, for tasks that end by themselves with what they
    /// serve (a publish lane's writer and reader end with its socket).
    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Runs `task` until it ends or the transport closes, tracked.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// The error of an operation that found no connection.
    pub(crate) fn unavailable(
        &self,
        what: &str,
        why: Unavailable,
        waited: Duration,
    ) -> TransportError {
        let addr = &self.target.addr;
        match why {
            Unavailable::Closed => TransportError::new(
                ErrorKind::Closed,
                format!("{what} failed: the Redis transport is closed"),
            ),
            Unavailable::GaveUp(cause) => TransportError::new(
                ErrorKind::Disconnected,
                format!(
                    "{what} failed: the connection to Redis at {addr} is lost and reconnecting \
                     gave up: {cause}"
                ),
            ),
            Unavailable::Deadline(Some(cause)) => TransportError::new(
                ErrorKind::Disconnected,
                format!("{what} failed: not connected to Redis at {addr} for {waited:?} ({cause})"),
            ),
            Unavailable::Deadline(None) => TransportError::new(
                ErrorKind::Disconnected,
                format!("{what} failed: not connected to Redis at {addr} for {waited:?}"),
            ),
        }
    }

    /// The error of a command that found every in-flight permit taken for `waited`.
    pub(crate) fn no_turn(&self, what: &str, waited: Duration) -> TransportError {
        TransportError::new(
            ErrorKind::Timeout,
            format!(
                "{what} timed out: it waited {waited:?} for its turn behind {} commands to Redis \
                 at {} that were queued or awaiting an answer (Redis answers more slowly than \
                 commands arrive; see RedisOptions::max_in_flight)",
                self.options.max_in_flight, self.target.addr
            ),
        )
    }

    /// Runs a command on the command connection: waits up to `wait` for its turn (an
    /// in-flight permit) and for the connection to be up, bounds the command by the response
    /// timeout, and sends it again on a new connection when the connection closed under it.
    pub(crate) async fn command<T: FromRedisValue>(
        &self,
        what: &str,
        cmd: &Cmd,
        wait: Duration,
    ) -> Result<T, TransportError> {
        self.in_turn(what, wait, |mut conn| async move {
            cmd.query_async::<T>(&mut conn).await
        })
        .await
    }

    /// Sends the publish path's commands as one pipeline as [`command`](Self::command) runs
    /// one command (one in-flight permit, one write, one read of every reply), on the publish
    /// lane where the connection has one (on a cluster, the lane to the node serving the
    /// commands' slot; the lane bounds the wait for the replies itself), through redis-rs
    /// otherwise or when a cluster's lane failed them; the replies, in order. Only for commands whose replies read
    /// the same in RESP2 and RESP3 (the lane speaks RESP2): `PUBLISH`, `SPUBLISH`, `XADD`.
    pub(crate) async fn lane_send<T: FromRedisValue>(
        &self,
        what: &str,
        cmds: &[Command<'_>],
        wait: Duration,
    ) -> Result<Vec<T>, TransportError> {
        let rt = self.options.response_timeout;
        self.lane_in_turn(what, wait, |mut conn| async move {
            if let Some(lane) = conn.lane_for(cmds) {
                match lane.query(cmds).await {
                    Err(e) if conn.lane_failed(&lane, &e) && !e.is_timeout() => {}
                    replies => return replies,
                }
            }
            if let [cmd] = cmds {
                let cmd = cmd.to_cmd();
                let sent = cmd.query_async::<T>(&mut conn);
                return bounded(rt, sent).await.map(|one| vec![one]);
            }
            let mut pipe = redis::Pipeline::with_capacity(cmds.len());
            cmds.iter().for_each(|c| {
                pipe.add_command(c.to_cmd());
            });
            bounded(rt, pipe.query_async::<Vec<T>>(&mut conn)).await
        })
        .await
    }

    /// [`lane_send`](Self::lane_send) of one command; its reply.
    pub(crate) async fn lane_command<T: FromRedisValue>(
        &self,
        what: &str,
        cmd: Command<'_>,
        wait: Duration,
    ) -> Result<T, TransportError> {
        let reply = self.lane_send::<T>(what, &[cmd], wait).await?.pop();
        reply.ok_or_else(|| {
            let addr = &self.target.addr;
            let message = format!("{what} failed: Redis at {addr} sent no reply");
            TransportError::new(ErrorKind::Server, message)
        })
    }

    /// Runs `query`, which bounds its own wait (see [`bounded`]), once an in-flight permit is
    /// free (waiting for one up to `wait`), through [`retry_bounded`](Self::retry_bounded).
    async fn lane_in_turn<T, F, Fut>(
        &self,
        what: &str,
        wait: Duration,
        query: F,
    ) -> Result<T, TransportError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (_permit, deadline) = self.turn(what, wait).await?;
        self.retry_bounded(what, deadline, wait, query).await
    }

    /// An in-flight permit, waiting for one up to `wait` (a command's turn), and the deadline
    /// that wait sets.
    async fn turn(
        &self,
        what: &str,
        wait: Duration,
    ) -> Result<(tokio::sync::SemaphorePermit<'_>, Instant), TransportError> {
        self.check_open()?;
        let deadline = Instant::now() + wait;
        let permit = match self.in_flight.try_acquire() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout_at(deadline, self.in_flight.acquire()).await {
                Ok(Ok(permit)) => permit,
                _ => return Err(self.no_turn(what, wait)),
            },
        };
        Ok((permit, deadline))
    }

    /// Runs `query` once an in-flight permit is free, through [`retry`](Self::retry).
    pub(crate) async fn in_turn<T, F, Fut>(
        &self,
        what: &str,
        wait: Duration,
        query: F,
    ) -> Result<T, TransportError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (_permit, deadline) = self.turn(what, wait).await?;
        self.retry(what, deadline, wait, query).await
    }

    /// Runs `query` on the command connection: waits up to `deadline` for the connection to
    /// be up, bounds each try by the response timeout, and tries again on the next connection
    /// when the connection closed under it, until the deadline. `what` names the operation in
    /// errors; `waited` is the wait they report when the connection stayed down.
    ///
    /// A try that gets no answer in time is not repeated: the server may still run it.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        waited: Duration,
        mut query: F,
    ) -> Result<T, TransportError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let rt = self.options.response_timeout;
        self.retry_bounded(what, deadline, waited, |conn| bounded(rt, query(conn)))
            .await
    }

    /// [`retry`](Self::retry) of a `query` that bounds its own wait: a try that failed with
    /// a [timeout](redis::RedisError::is_timeout) got no answer in time.
    async fn retry_bounded<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        waited: Duration,
        mut query: F,
    ) -> Result<T, TransportError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut rx = self.commands.subscribe();
        let rt = self.options.response_timeout;
        let addr = &self.target.addr;
        loop {
            let (conn, epoch) = link::wait_up(&mut rx, deadline)
                .await
                .map_err(|why| self.unavailable(what, why, waited))?;
            match query(conn).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_timeout() => return Err(errors::timeout_error(addr, what, rt)),
                Err(e) if self.target.must_reconnect(&e) => {
                    let cause = format!("{what} failed: {}", errors::redis_text(&e));
                    link::mark_down(&self.commands, epoch, cause);
                    if Instant::now() >= deadline {
                        return Err(errors::command_error(addr, what, e));
                    }
                }
                Err(e) => return Err(errors::command_error(addr, what, e)),
            }
        }
    }

    /// Connects with `connect` until it succeeds, backing off between attempts; the first
    /// attempt is made at once. Returns what `connect` produced and the number of attempts, or
    /// `None` when the transport was closed or the attempts ran out (then the link says
    /// `gave_up` and a `Disconnected` event was sent).
    pub(crate) async fn reconnect<L, C, F, Fut>(
        &self,
        role: &'static str,
        link: &watch::Sender<Link<L>>,
        mut connect: F,
    ) -> Option<(C, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<C, TransportError>>,
    {
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                let delay = self.options.backoff_delay(attempt);
                tokio::select! {
                    _ = self.cancel.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            attempt = attempt.saturating_add(1);
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return None,
                r = connect() => r,
            };
            let e = match result {
                Ok(c) => return Some((c, attempt)),
                Err(e) => e,
            };
            let gave_up = self.options.max_attempts.is_some_and(|max| attempt >= max);
            let cause: Arc<str> = Arc::from(errors::chain_text(&e));
            tracing::debug!(role, attempt, error = %cause, gave_up, "redis reconnect attempt failed");
            let down = Link::Down {
                cause: cause.clone(),
                gave_up,
            };
            link::set(link, down);
            if gave_up {
                self.inbound.connection(ConnectionEvent::Disconnected {
                    role,
                    cause: format!("gave up reconnecting after {attempt} attempt(s): {cause}"),
                });
                return None;
            }
        }
    }
}

/// `query` bounded by `timeout`: no answer in time is an error of kind
/// [`TimedOut`](std::io::ErrorKind::TimedOut).
pub(crate) async fn bounded<T>(
    timeout: Duration,
    query: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(timeout, query).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}
