//! `tail --stream`: reads durable streams with XREAD, joining no consumer group.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use eventbus::EventBus;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::from::Start;
use super::topics::{is_glob, names};
use crate::commands::scan::stream_keys;
use crate::exit::CliError;
use crate::incoming::Incoming;
use crate::session::{Session, connect};

/// How long one XREAD waits for entries.
const BLOCK_MS: u64 = 1000;
/// How often globs are matched again for new streams.
const RESCAN_EVERY: Duration = Duration::from_secs(2);
/// The entry field holding the envelope (wire contract v1.1).
const FIELD: &str = "envelope";

type Sender = UnboundedSender<Result<Incoming, CliError>>;

/// Starts reading the streams the arguments name (globs matched with SCAN); entries go
/// to `tx`.
pub(super) async fn follow(
    url: &str,
    args: &[String],
    start: Start,
    tx: Sender,
) -> Result<Session, CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let conn = session.raw().await?;
    let (globs, keys) = names(args).into_iter().partition(|n| is_glob(n));
    let mut reader = Reader {
        conn,
        globs,
        positions: BTreeMap::new(),
        shown_url: session.shown_url.clone(),
    };
    reader.add_keys(keys, &start).await?;
    reader.rescan(&start).await?;
    tokio::spawn(reader.run(tx));
    Ok(session)
}

/// The streams being read and the last entry id seen in each.
struct Reader {
    conn: MultiplexedConnection,
    globs: Vec<String>,
    positions: BTreeMap<String, String>,
    shown_url: String,
}

impl Reader {
    async fn run(mut self, tx: Sender) {
        let mut scanned = Instant::now();
        loop {
            if scanned.elapsed() >= RESCAN_EVERY {
                scanned = Instant::now();
                let new = Start::After("0-0".into());
                if let Err(e) = self.rescan(&new).await {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
            match self.read().await {
                Ok(entries) => {
                    for entry in entries {
                        if tx.send(Ok(entry)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    }

    /// Adds streams found by the globs that are not read yet, starting at `start`.
    async fn rescan(&mut self, start: &Start) -> Result<(), CliError> {
        let mut found = Vec::new();
        for glob in &self.globs {
            let keys = stream_keys(&mut self.conn, glob)
                .await
                .map_err(|e| self.failed("SCAN", &e))?;
            found.extend(keys.into_iter().filter(|k| !self.positions.contains_key(k)));
        }
        self.add_keys(found, start).await
    }

    async fn add_keys(&mut self, keys: Vec<String>, start: &Start) -> Result<(), CliError> {
        for key in keys {
            let position = match start {
                Start::After(id) => id.clone(),
                Start::End => self.last_id(&key).await?,
            };
            self.positions.insert(key, position);
        }
        Ok(())
    }

    /// The id of the last entry of a stream, `0-0` when it has none.
    async fn last_id(&mut self, key: &str) -> Result<String, CliError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(key).arg("+").arg("-").arg("COUNT").arg(1);
        let reply: redis::streams::StreamRangeReply = cmd
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.failed("XREVRANGE", &e))?;
        Ok(reply
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
    }

    /// One XREAD over every stream; waits up to [`BLOCK_MS`].
    async fn read(&mut self) -> Result<Vec<Incoming>, CliError> {
        if self.positions.is_empty() {
            tokio::time::sleep(Duration::from_millis(BLOCK_MS)).await;
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS");
        cmd.arg(self.positions.keys().collect::<Vec<_>>());
        cmd.arg(self.positions.values().collect::<Vec<_>>());
        let reply: Option<StreamReadReply> = cmd
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.failed("XREAD", &e))?;
        let mut out = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                self.positions.insert(stream.key.clone(), entry.id.clone());
                out.push(incoming(&stream.key, entry));
            }
        }
        Ok(out)
    }

    fn failed(&self, what: &str, e: &redis::RedisError) -> CliError {
        CliError::failed(format!("{what} failed on {}: {e}", self.shown_url))
    }
}

/// A stream entry as a message: its `envelope` field.
fn incoming(key: &str, entry: StreamId) -> Incoming {
    let payload = match entry.map.get(FIELD) {
        Some(redis::Value::BulkString(bytes)) => Some(Bytes::from(bytes.clone())),
        Some(redis::Value::SimpleString(text)) => Some(Bytes::from(text.clone())),
        _ => None,
    };
    Incoming {
        channel: key.to_owned(),
        entry_id: Some(entry.id),
        unreadable: payload
            .is_none()
            .then(|| format!("stream entry has no `{FIELD}` field")),
        payload: payload.unwrap_or_default(),
    }
}
