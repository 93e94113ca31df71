//! Finding stream keys with SCAN.

use redis::RedisError;
use redis::aio::MultiplexedConnection;

/// Every key of type stream matching `glob`, sorted.
pub(crate) async fn stream_keys(
    conn: &mut MultiplexedConnection,
    glob: &str,
) -> Result<Vec<String>, RedisError> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(glob)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream");
        let (next, batch): (u64, Vec<String>) = cmd.query_async(conn).await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}
