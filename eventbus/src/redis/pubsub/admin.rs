//! Pub/sub queries across the server: `PUBSUB CHANNELS`, `NUMSUB`, `NUMPAT` (on a cluster,
//! the sharded ones asked of every node: see `cluster/admin.rs`).

use redis::Value;

use crate::redis::shared::Shared;
use crate::redis::streams::reply::text;
use crate::transport::{ErrorKind, TransportError};

/// Reads `PUBSUB NUMSUB`'s flat `[channel, count, ...]` reply.
pub(crate) fn parse_numsub(reply: Vec<Value>) -> Result<Vec<(String, u64)>, TransportError> {
    let bad = || {
        TransportError::new(
            ErrorKind::Server,
            "unexpected reply to PUBSUB NUMSUB from Redis",
        )
    };
    let mut out = Vec::with_capacity(reply.len() / 2);
    let mut it = reply.into_iter();
    while let Some(channel) = it.next() {
        let count = it.next().ok_or_else(bad)?;
        let channel = text(&channel).ok_or_else(bad)?;
        let count = match count {
            Value::Int(n) => u64::try_from(n).map_err(|_| bad())?,
            other => text(&other).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
        };
        out.push((channel, count));
    }
    Ok(out)
}

/// `PUBSUB CHANNELS [pattern]`, sorted.
pub(crate) async fn channels(
    shared: &Shared,
    pattern: Option<&str>,
) -> Result<Vec<String>, TransportError> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("CHANNELS");
    if let Some(p) = pattern {
        cmd.arg(p);
    }
    let wait = shared.options.publish_deadline;
    let mut channels: Vec<String> = shared.command("PUBSUB CHANNELS", &cmd, wait).await?;
    channels.sort();
    Ok(channels)
}

/// `PUBSUB NUMSUB channel...`: the subscribers of each channel, in the order asked.
pub(crate) async fn numsub(
    shared: &Shared,
    channels: &[String],
) -> Result<Vec<(String, u64)>, TransportError> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMSUB").arg(channels);
    let wait = shared.options.publish_deadline;
    let reply: Vec<Value> = shared.command("PUBSUB NUMSUB", &cmd, wait).await?;
    parse_numsub(reply)
}

/// `PUBSUB NUMPAT`.
pub(crate) async fn numpat(shared: &Shared) -> Result<u64, TransportError> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMPAT");
    let wait = shared.options.publish_deadline;
    shared.command("PUBSUB NUMPAT", &cmd, wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_replies_are_paired() {
        let reply = vec![
            Value::BulkString(b"a".to_vec()),
            Value::Int(2),
            Value::BulkString(b"b".to_vec()),
            Value::Int(0),
        ];
        assert_eq!(
            parse_numsub(reply).unwrap(),
            vec![("a".to_owned(), 2), ("b".to_owned(), 0)]
        );
        assert!(parse_numsub(vec![Value::BulkString(b"a".to_vec())]).is_err());
    }
}
