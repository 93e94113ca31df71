//! Opening a connection for commands: to the server the target names now (behind Sentinel,
//! the current primary), or to a cluster's nodes, checked with a `PING`.

use tokio_util::task::TaskTracker;

use crate::redis::RedisOptions;
use crate::redis::conn::connection::Conn;
use crate::redis::conn::lane::Lane;
use crate::redis::conn::link;
use crate::redis::errors;
use crate::redis::target::Target;
use crate::transport::TransportError;

/// Which connections [`open`] makes on a single server, or a cluster, reached without TLS.
#[derive(Clone, Copy)]
pub(crate) enum Lanes<'a> {
    /// The multiplexed connection and a publish lane (on a cluster: the cluster connection
    /// and a lane per primary), their tasks tracked by the tracker: the publisher's.
    WithLane(&'a TaskTracker),
    /// The multiplexed (or cluster) connection only: a stream reader's, which never
    /// publishes.
    CommandsOnly,
}

/// Opens a connection and checks it with a `PING` (which also reveals a missing password:
/// without one, connecting succeeds and only the first command gets `NOAUTH`).
pub(crate) async fn open(
    target: &Target,
    options: &RedisOptions,
    lanes: Lanes<'_>,
) -> Result<Conn, TransportError> {
    let connecting = connect(target, options, lanes);
    let mut conn = match tokio::time::timeout(options.connect_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(Found::Not(e))) => return Err(e),
        Ok(Err(Found::Failed(e))) => {
            return Err(errors::connect_error(
                &target.addr,
                e,
                options.connect_timeout,
            ));
        }
        Err(_) => {
            return Err(errors::connect_error(
                &target.addr,
                std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
                options.connect_timeout,
            ));
        }
    };
    let cmd = redis::cmd("PING");
    link::ping_within(options.response_timeout, cmd.query_async::<()>(&mut conn))
        .await
        .map_err(|e| e.connect_error(&target.addr, options.connect_timeout))?;
    Ok(conn)
}

/// Connects to the server the target names now (a cluster: to its nodes).
async fn connect(target: &Target, options: &RedisOptions, lanes: Lanes<'_>) -> Result<Conn, Found> {
    if let Some(cluster) = target.cluster() {
        let mut commands = cluster
            .commands()
            .get_async_connection()
            .await
            .map_err(Found::Failed)?;
        let lanes = match lanes {
            Lanes::WithLane(tasks) => cluster.lanes(tasks, options.response_timeout),
            Lanes::CommandsOnly => None,
        };
        if let Some(lanes) = &lanes {
            // The lanes are a shortcut: without them the cluster connection carries all.
            let _ = lanes.refresh(&mut commands).await;
        }
        return Ok(Conn::Cluster { commands, lanes });
    }
    let client = target.client().await.map_err(Found::Not)?;
    let commands = client
        .get_multiplexed_async_connection_with_config(&target.config(options))
        .await
        .map_err(Found::Failed)?;
    let lane = match lanes {
        Lanes::WithLane(tasks) => {
            let info = client.get_connection_info();
            Lane::open(info, tasks, options.response_timeout)
                .await
                .map_err(Found::Failed)?
        }
        Lanes::CommandsOnly => None,
    };
    Ok(Conn::Single { commands, lane })
}

/// Why a connection could not be made: the server was not found (behind Sentinel), or
/// connecting to it failed.
pub(crate) enum Found {
    Not(TransportError),
    Failed(redis::RedisError),
}
