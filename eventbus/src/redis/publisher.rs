//! The publisher: one multiplexed connection for `PUBLISH` and every other command, so
//! concurrent commands pipeline on one socket. A supervisor task pings it and replaces it when
//! it is lost.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::RedisOptions;
use super::Shared;
use super::link::{self, Link};
use super::target::Target;
use crate::transport::{ConnectionEvent, TransportError};

pub(crate) const ROLE: &str = "publisher";

pub(crate) struct Publisher {
    pub(crate) link: watch::Sender<Link<MultiplexedConnection>>,
}

impl Publisher {
    pub(crate) fn new(conn: MultiplexedConnection) -> Self {
        Publisher {
            link: watch::Sender::new(Link::Up { conn, epoch: 1 }),
        }
    }
}

/// Opens a connection and checks it with a `PING` (which also reveals a missing password:
/// without one, connecting succeeds and only the first command gets `NOAUTH`).
pub(crate) async fn open(
    target: &Target,
    options: &RedisOptions,
) -> Result<MultiplexedConnection, TransportError> {
    let config = target.config(options);
    let connect = target
        .client
        .get_multiplexed_async_connection_with_config(&config);
    let mut conn = match tokio::time::timeout(options.connect_timeout, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(target.connect_error(e, options.connect_timeout)),
        Err(_) => {
            return Err(target.connect_error(
                std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
                options.connect_timeout,
            ));
        }
    };
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<()>(&mut conn);
    match tokio::time::timeout(options.response_timeout, ping).await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(e)) => Err(target.connect_error(e, options.connect_timeout)),
        Err(_) => Err(target.connect_error(
            std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
            options.response_timeout,
        )),
    }
}

/// Keeps the publisher connected: watches for a reported failure or an unanswered watchdog
/// `PING`, then reconnects with backoff.
pub(crate) async fn supervise(shared: Arc<Shared>) {
    let link = &shared.publisher.link;
    let mut epoch = match &*link.borrow() {
        Link::Up { epoch, .. } => *epoch,
        _ => return,
    };
    loop {
        let Some(cause) = connected(&shared, epoch).await else {
            return;
        };
        shared.inbound.connection(ConnectionEvent::Disconnected {
            role: ROLE,
            cause: cause.to_string(),
        });
        let opened = link::reconnect(&shared, ROLE, link, || {
            open(&shared.target, &shared.options)
        })
        .await;
        let Some((conn, attempts)) = opened else {
            return;
        };
        epoch += 1;
        link::set(link, Link::Up { conn, epoch });
        shared.inbound.connection(ConnectionEvent::Reconnected {
            role: ROLE,
            attempts,
        });
    }
}

/// Runs while connection `epoch` is up; returns why it went down, or `None` on close.
async fn connected(shared: &Shared, epoch: u64) -> Option<Arc<str>> {
    let link = &shared.publisher.link;
    let mut rx = link.subscribe();
    let options = &shared.options;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return None,
            cause = link::wait_down(&mut rx, epoch) => return cause,
            _ = link::tick(options.watchdog_interval) => {
                let conn = match &*link.borrow() {
                    Link::Up { conn, epoch: g } if *g == epoch => Some(conn.clone()),
                    _ => None,
                };
                let Some(conn) = conn else { continue };
                if let Err(cause) = watchdog_ping(conn, options).await {
                    link::mark_down(link, epoch, cause);
                }
            }
        }
    }
}

async fn watchdog_ping(
    mut conn: MultiplexedConnection,
    options: &RedisOptions,
) -> Result<(), String> {
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<()>(&mut conn);
    match tokio::time::timeout(options.response_timeout, ping).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("watchdog PING failed: {e}")),
        Err(_) => Err(format!(
            "watchdog PING got no answer within {:?}",
            options.response_timeout
        )),
    }
}
