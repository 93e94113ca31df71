//! The state of one connection, shared between its supervisor task and its users.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::redis::errors;
use redis::RedisResult;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::transport::{ErrorKind, TransportError};

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
