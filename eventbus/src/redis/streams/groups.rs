//! Consumer groups on the server: created when a handler joins, recreated when the server lost
//! them, and listed for a stream.

use std::time::UNIX_EPOCH;

use redis::{Cmd, Value};

use crate::options::StartFrom;
use crate::redis::shared::Shared;
use crate::redis::streams::reply;
use crate::transport::{GroupSpec, GroupStatus, TransportError};

fn start_id(start: StartFrom) -> String {
    match start {
        StartFrom::New => "$".to_owned(),
        StartFrom::Beginning => "0".to_owned(),
        StartFrom::Time(t) => {
            let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
            format!("{ms}-0")
        }
    }
}

/// `XGROUP CREATE <stream> <group> <at> MKSTREAM`.
pub(super) fn create_cmd(spec: &GroupSpec, at: &str) -> Cmd {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(&spec.stream)
        .arg(&spec.group)
        .arg(at)
        .arg("MKSTREAM");
    cmd
}

/// Creates the group at its start position if missing (an existing group keeps its
/// position); returns the id of the last entry the group has delivered, when it can be read.
pub(super) async fn create_group(
    shared: &Shared,
    spec: &GroupSpec,
) -> Result<Option<String>, TransportError> {
    let cmd = create_cmd(spec, &start_id(spec.start));
    let wait = shared.options.publish_deadline;
    shared
        .in_turn("creating a consumer group", wait, |mut conn| {
            let cmd = &cmd;
            async move {
                match cmd.query_async::<()>(&mut conn).await {
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                    other => other,
                }
            }
        })
        .await?;
    let groups = stream_groups(shared, &spec.stream)
        .await
        .unwrap_or_default();
    Ok(groups
        .into_iter()
        .find(|g| g.group == spec.group)
        .map(|g| g.last_delivered))
}

/// `XINFO GROUPS stream`: every group of the stream; none when the stream is missing.
pub(crate) async fn stream_groups(
    shared: &Shared,
    stream: &str,
) -> Result<Vec<GroupStatus>, TransportError> {
    let mut cmd = redis::cmd("XINFO");
    cmd.arg("GROUPS").arg(stream);
    let wait = shared.options.response_timeout;
    shared
        .in_turn("reading consumer groups", wait, |mut conn| {
            let cmd = &cmd;
            async move {
                match cmd.query_async::<Value>(&mut conn).await {
                    Ok(reply) => Ok(reply::groups(reply, stream)),
                    // A missing stream is `ERR no such key`: its absence is checked, not read
                    // from the message.
                    Err(e) if e.code() == Some("ERR") => {
                        let exists: bool = redis::cmd("EXISTS")
                            .arg(stream)
                            .query_async(&mut conn)
                            .await?;
                        if exists { Err(e) } else { Ok(Vec::new()) }
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await
}

/// `XRANGE <stream> <id> <id>`: asks whether the stream still holds the entry `id`.
pub(super) fn holds_cmd(stream: &str, id: &str) -> Cmd {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(stream).arg(id).arg(id);
    cmd
}
