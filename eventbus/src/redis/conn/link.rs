//! The state of one connection, shared between its supervisor task and its users, and the
//! reconnect loop with backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::redis::conn::connection::Conn;
use crate::redis::errors;
use redis::RedisResult;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::redis::Shared;

use crate::transport::{ConnectionEvent, ErrorKind, TransportError};

/// Where a connection stands. Users read it through a `watch` channel; only the supervisor
/// moves it forward, except that a user who sees the connection fail marks it [`Link::Down`].
#[derive(Clone)]
pub(crate) enum Link<C> {
    /// Never asked to connect (a subscriber before the first subscription).
    Idle,
    /// The first connection is being made.
    Connecting,
    /// Connected; `epoch` tells connections apart, so a stale failure report is ignored.
    Up { conn: C, epoch: u64 },
    /// Lost, being re-established unless `gave_up`.
    Down { cause: Arc<str>, gave_up: bool },
    /// The transport was closed.
    Closed,
}

impl<C> Link<C> {
    pub(crate) fn is_up(&self, current: u64) -> bool {
        matches!(self, Link::Up { epoch, .. } if *epoch == current)
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Link::Idle => "idle",
            Link::Connecting => "connecting",
            Link::Up { .. } => "connected",
            Link::Down { gave_up: false, .. } => "reconnecting",
            Link::Down { gave_up: true, .. } => "gave up",
            Link::Closed => "closed",
        }
    }
}

/// Sets the link, unless the transport was closed.
pub(crate) fn set<C>(link: &watch::Sender<Link<C>>, new: Link<C>) {
    link.send_if_modified(|l| {
        if matches!(l, Link::Closed) {
            false
        } else {
            *l = new;
            true
        }
    });
}

/// Marks connection `epoch` as lost, if it is still the current one.
pub(crate) fn mark_down<C>(link: &watch::Sender<Link<C>>, epoch: u64, cause: impl Into<Arc<str>>) {
    let cause = cause.into();
    link.send_if_modified(|l| {
        if l.is_up(epoch) {
            *l = Link::Down {
                cause,
                gave_up: false,
            };
            true
        } else {
            false
        }
    });
}

/// Why no connection could be had.
pub(crate) enum Unavailable {
    Closed,
    GaveUp(Arc<str>),
    /// The deadline passed while (re)connecting; the last error, if any.
    Deadline(Option<Arc<str>>),
}

/// Waits until the link is up (returning a clone of the connection), closed, given up, or the
/// deadline passes.
pub(crate) async fn wait_up<C: Clone>(
    rx: &mut watch::Receiver<Link<C>>,
    deadline: Instant,
) -> Result<(C, u64), Unavailable> {
    // Fast path: already up, no timer needed.
    if let Link::Up { conn, epoch } = &*rx.borrow_and_update() {
        return Ok((conn.clone(), *epoch));
    }
    let outcome = {
        let waited = tokio::time::timeout_at(
            deadline,
            rx.wait_for(|l| {
                !matches!(
                    l,
                    Link::Idle | Link::Connecting | Link::Down { gave_up: false, .. }
                )
            }),
        )
        .await;
        match waited {
            Ok(Ok(l)) => Some(match &*l {
                Link::Up { conn, epoch } => Ok((conn.clone(), *epoch)),
                Link::Down { cause, .. } => Err(Unavailable::GaveUp(cause.clone())),
                _ => Err(Unavailable::Closed),
            }),
            Ok(Err(_)) => Some(Err(Unavailable::Closed)),
            Err(_) => None,
        }
    };
    outcome.unwrap_or_else(|| {
        let cause = match &*rx.borrow() {
            Link::Down { cause, .. } => Some(cause.clone()),
            _ => None,
        };
        Err(Unavailable::Deadline(cause))
    })
}

/// Waits until the link is no longer connection `epoch`; returns the cause when it went down,
/// `None` when it was closed.
pub(crate) async fn wait_down<C>(
    rx: &mut watch::Receiver<Link<C>>,
    epoch: u64,
) -> Option<Arc<str>> {
    match rx.wait_for(|l| !l.is_up(epoch)).await {
        Ok(l) => match &*l {
            Link::Down { cause, .. } => Some(cause.clone()),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Sleeps for `interval`, or forever when it is `None`.
pub(crate) async fn tick(interval: Option<Duration>) {
    match interval {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Connects with `connect` until it succeeds, backing off between attempts; the first attempt
/// is made at once. Returns what `connect` produced and the number of attempts, or `None` when
/// the transport was closed or the attempts ran out (then the link says `gave_up` and a
/// `Disconnected` event was sent).
pub(crate) async fn reconnect<L, C, F, Fut>(
    shared: &Shared,
    role: &'static str,
    link: &watch::Sender<Link<L>>,
    mut connect: F,
) -> Option<(C, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<C, TransportError>>,
{
    let options = &shared.options;
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            let delay = options.backoff_delay(attempt);
            tokio::select! {
                _ = shared.cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        attempt = attempt.saturating_add(1);
        let result = tokio::select! {
            _ = shared.cancel.cancelled() => return None,
            r = connect() => r,
        };
        match result {
            Ok(c) => return Some((c, attempt)),
            Err(e) => {
                let gave_up = options.max_attempts.is_some_and(|max| attempt >= max);
                let cause: Arc<str> = Arc::from(errors::chain_text(&e));
                tracing::debug!(role, attempt, error = %cause, gave_up, "redis reconnect attempt failed");
                set(
                    link,
                    Link::Down {
                        cause: cause.clone(),
                        gave_up,
                    },
                );
                if gave_up {
                    shared.inbound.connection(ConnectionEvent::Disconnected {
                        role,
                        cause: format!("gave up reconnecting after {attempt} attempt(s): {cause}"),
                    });
                    return None;
                }
            }
        }
    }
}

/// Why a `PING` failed.
pub(crate) enum PingError {
    /// The server or the connection answered with an error.
    Failed(redis::RedisError),
    /// No answer within the timeout.
    NoAnswer(Duration),
}

impl PingError {
    /// Maps the failure of the `PING` that checks a new connection.
    pub(crate) fn connect_error(self, addr: &str, connect_timeout: Duration) -> TransportError {
        match self {
            PingError::Failed(e) => errors::connect_error(addr, e, connect_timeout),
            PingError::NoAnswer(d) => TransportError::new(
                ErrorKind::Timeout,
                format!(
                    "Redis at {} accepted the connection but did not answer PING within {d:?}",
                    addr
                ),
            ),
        }
    }

    /// The cause a watchdog reports when its `PING` fails.
    pub(crate) fn watchdog_cause(&self) -> String {
        match self {
            PingError::Failed(e) => format!("watchdog PING failed: {}", errors::redis_text(e)),
            PingError::NoAnswer(d) => format!("watchdog PING got no answer within {d:?}"),
        }
    }
}

/// Waits up to `timeout` for `ping` (a `PING` sent on some connection) to be answered.
pub(crate) async fn ping_within<T>(
    timeout: Duration,
    ping: impl Future<Output = RedisResult<T>>,
) -> Result<(), PingError> {
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(PingError::Failed(e)),
        Err(_) => Err(PingError::NoAnswer(timeout)),
    }
}

/// Runs `query` on the publisher connection: waits up to `deadline` for the connection to be
/// up, bounds each try by the response timeout, and tries again on the next connection when
/// the connection closed under it, until the deadline. `what` names the operation in errors;
/// `waited` is the wait they report when the connection stayed down.
///
/// A try that gets no answer in time is not repeated: the server may still run it.
pub(crate) async fn retry<T, F, Fut>(
    shared: &Shared,
    what: &str,
    deadline: Instant,
    waited: Duration,
    mut query: F,
) -> Result<T, TransportError>
where
    F: FnMut(Conn) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let link = &shared.publisher.link;
    let mut rx = link.subscribe();
    let rt = shared.options.response_timeout;
    loop {
        let (conn, epoch) = wait_up(&mut rx, deadline)
            .await
            .map_err(|why| shared.unavailable(what, why, waited))?;
        match tokio::time::timeout(rt, query(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if shared.target.must_reconnect(&e) => {
                let cause = format!("{what} failed: {}", errors::redis_text(&e));
                mark_down(link, epoch, cause);
                if Instant::now() >= deadline {
                    return Err(errors::command_error(&shared.target.addr, what, e));
                }
            }
            Ok(Err(e)) => return Err(errors::command_error(&shared.target.addr, what, e)),
            Err(_) => return Err(errors::timeout_error(&shared.target.addr, what, rt)),
        }
    }
}
