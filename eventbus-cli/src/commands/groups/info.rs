//! What the server says about a stream and its consumer groups.

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroup, StreamInfoGroupsReply};
use serde_json::{Value, json};

use crate::commands::tail::topics::channel_name;
use crate::exit::{CliError, Code};
use crate::session::Session;

/// The stream key of a STREAM argument: `order_placed` → `events:order_placed`; a key with
/// the prefix is kept, as `tail --stream` does.
pub(super) fn stream_key(arg: &str) -> String {
    channel_name(arg)
}

/// The consumer groups of the stream `key` (XINFO GROUPS); exit 4 when there is no such
/// stream.
pub(super) async fn groups(
    session: &Session,
    conn: &mut MultiplexedConnection,
    key: &str,
) -> Result<Vec<StreamInfoGroup>, CliError> {
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| session.command_error("TYPE", &e))?;
    match kind.as_str() {
        "stream" => {}
        "none" => return Err(CliError::new(Code::NotFound, format!("no stream {key}"))),
        other => {
            return Err(CliError::new(
                Code::NotFound,
                format!("no stream {key}: the key holds a {other}"),
            ));
        }
    }
    let reply: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| session.command_error("XINFO GROUPS", &e))?;
    Ok(reply.groups)
}

/// The group `name` of the stream `key`; exit 4 when the stream or the group does not exist.
pub(super) async fn group(
    session: &Session,
    conn: &mut MultiplexedConnection,
    key: &str,
    name: &str,
) -> Result<StreamInfoGroup, CliError> {
    groups(session, conn, key)
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| missing(key, name))
}

/// The error of a group that does not exist (exit 4).
pub(super) fn missing(key: &str, name: &str) -> CliError {
    CliError::new(
        Code::NotFound,
        format!("no consumer group {name} on the stream {key}"),
    )
}

/// A group as JSON: `{"stream", "group", "consumers", "pending", "lag", "entries_read",
/// "last_delivered_id"}`.
pub(super) fn to_json(key: &str, g: &StreamInfoGroup) -> Value {
    json!({
        "stream": key,
        "group": g.name,
        "consumers": g.consumers,
        "pending": g.pending,
        "lag": g.lag,
        "entries_read": g.entries_read,
        "last_delivered_id": g.last_delivered_id,
    })
}

/// The lag as text, `?` when the server cannot tell.
pub(super) fn lag(g: &StreamInfoGroup) -> String {
    g.lag.map_or_else(|| "?".to_owned(), |l| l.to_string())
}
