//! Pub/sub queries across the server: `PUBSUB CHANNELS`, `NUMSUB`, `NUMPAT` (on a cluster,
//! the sharded ones asked of every node: see `cluster_admin.rs`).

use redis::Value;

use crate::redis::RedisTransport;
use crate::redis::streams::reply::text;
use crate::transport::{BoxFuture, ErrorKind, PubSubAdmin, TransportError};

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

impl PubSubAdmin for RedisTransport {
    fn channels<'a>(
        &'a self,
        pattern: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, TransportError>> {
        Box::pin(async move {
            if self.shared.target.cluster().is_some() {
                return crate::redis::cluster::admin::channels(&self.shared, pattern).await;
            }
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("CHANNELS");
            if let Some(p) = pattern {
                cmd.arg(p);
            }
            let s = &self.shared;
            let mut channels: Vec<String> = s
                .command("PUBSUB CHANNELS", &cmd, s.options.publish_deadline)
                .await?;
            channels.sort();
            Ok(channels)
        })
    }

    fn numsub<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>, TransportError>> {
        Box::pin(async move {
            if channels.is_empty() {
                return Ok(Vec::new());
            }
            if self.shared.target.cluster().is_some() {
                return crate::redis::cluster::admin::numsub(&self.shared, channels).await;
            }
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("NUMSUB").arg(channels);
            let s = &self.shared;
            let reply: Vec<Value> = s
                .command("PUBSUB NUMSUB", &cmd, s.options.publish_deadline)
                .await?;
            parse_numsub(reply)
        })
    }

    fn numpat(&self) -> BoxFuture<'_, Result<u64, TransportError>> {
        Box::pin(async move {
            if self.shared.target.cluster().is_some() {
                return crate::redis::cluster::admin::numpat(&self.shared).await;
            }
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("NUMPAT");
            let s = &self.shared;
            s.command("PUBSUB NUMPAT", &cmd, s.options.publish_deadline)
                .await
        })
    }
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
