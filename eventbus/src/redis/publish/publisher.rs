//! The publisher's connection and its supervisor: one multiplexed connection (redis-rs) for
//! every command, with the publish lane beside it on a single server reached without TLS (on
//! a cluster, one cluster connection). The supervisor task pings both and replaces them when
//! they are lost. How a publish travels is in the [module above](super).

use std::sync::Arc;
use std::time::Duration;

use crate::redis::conn::connection::Conn;
use crate::redis::conn::link::{self, Link};
use crate::redis::conn::open::{Lanes, open};
use crate::redis::shared::Shared;
use crate::transport::ConnectionEvent;

pub(crate) const ROLE: &str = "publisher";

/// Keeps the publisher connected: watches for a reported failure or an unanswered watchdog
/// `PING`, then reconnects with backoff.
pub(crate) async fn supervise(shared: Arc<Shared>) {
    let link = &shared.commands;
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
        let opened = shared
            .reconnect(ROLE, link, || {
                open(
                    &shared.target,
                    &shared.options,
                    Lanes::WithLane(shared.tasks()),
                )
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
    let link = &shared.commands;
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
                if let Err(e) = watchdog_ping(conn, options.response_timeout).await {
                    link::mark_down(link, epoch, e.watchdog_cause());
                }
            }
        }
    }
}

/// Pings the multiplexed connection and, where there is one, the publish lane.
async fn watchdog_ping(mut conn: Conn, timeout: Duration) -> Result<(), link::PingError> {
    let cmd = redis::cmd("PING");
    link::ping_within(timeout, cmd.query_async::<()>(&mut conn)).await?;
    match conn.lane() {
        Some(lane) => link::ping_within(timeout, lane.ping()).await,
        None => Ok(()),
    }
}
