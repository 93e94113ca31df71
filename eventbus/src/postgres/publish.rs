//! Publishing a batch of outbox rows: consecutive rows of one delivery model go out as one
//! pipeline. A pipeline refused for one row's sake (a key of another type) is sent again row
//! by row to find the rows Redis can never take (the poison), which are set aside rather than
//! tried forever; the rows of that pipeline that went through the first time go again (at
//! least once). Any other refusal (out of memory, a read-only replica, a failing disk) is the
//! server's: the rows wait.

use bytes::Bytes;

use super::outbox::Delivery;
use std::time::{Duration, UNIX_EPOCH};

use crate::transport::{ErrorKind, Route, Scheduled, Transport, TransportError, When};

/// One row as the relay read it.
#[derive(Debug, Clone)]
pub(crate) struct RelayRow {
    pub(crate) seq: i64,
    pub(crate) event_id: String,
    pub(crate) key: String,
    pub(crate) delivery: String,
    pub(crate) envelope: String,
    /// For an event published for later: when, in milliseconds since the epoch (the
    /// database's clock).
    pub(crate) deliver_at: Option<i64>,
}

/// What became of a batch.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// Rows Redis acknowledged, to remove.
    pub(crate) sent: Vec<i64>,
    /// Rows Redis can never take, with the reason, to move aside.
    pub(crate) poison: Vec<(i64, String)>,
    /// Why the rest was not published (Redis unreachable, say): those rows stay.
    pub(crate) error: Option<TransportError>,
}

/// Publishes `rows` in order, stopping at the first error that is the connection's.
pub(crate) async fn publish(
    transport: &dyn Transport,
    rows: &[RelayRow],
    max_size: usize,
) -> Published {
    let mut out = Published::default();
    for run in runs(rows) {
        let mut ready = Vec::with_capacity(run.len());
        for row in run {
            match refusal(row, max_size) {
                Some(reason) => out.poison.push((row.seq, reason)),
                None => ready.push(row),
            }
        }
        let Some(first) = ready.first() else { continue };
        let delivery = Delivery::parse(&first.delivery).unwrap_or(Delivery::Stream);
        if first.deliver_at.is_some() {
            if !schedule(transport, delivery, &ready, &mut out).await {
                return out;
            }
            continue;
        }
        let batch: Vec<(String, Bytes)> = ready
            .iter()
            .map(|r| (r.key.clone(), Bytes::from(r.envelope.clone())))
            .collect();
        match send(transport, delivery, &batch).await {
            Ok(()) => out.sent.extend(ready.iter().map(|r| r.seq)),
            Err(e) if !is_row_refusal(&e) => {
                out.error = Some(e);
                return out;
            }
            Err(_) => {
                if !one_by_one(transport, delivery, &ready, &mut out).await {
                    return out;
                }
            }
        }
    }
    out
}

/// Hands rows published for later to the transport's schedule, one at a time, each due at its
/// time; false when the connection failed. A transport without a schedule can never take them.
async fn schedule(
    transport: &dyn Transport,
    delivery: Delivery,
    rows: &[&RelayRow],
    out: &mut Published,
) -> bool {
    let route = match delivery {
        Delivery::Stream => Route::Append,
        Delivery::PubSub => Route::Publish,
        Delivery::Sharded => Route::PublishSharded,
    };
    let Some(scheduler) = transport.scheduler() else {
        let why = "the transport keeps no schedule for events published for later";
        out.poison
            .extend(rows.iter().map(|r| (r.seq, why.to_owned())));
        return true;
    };
    for row in rows {
        let ms = u64::try_from(row.deliver_at.unwrap_or(0)).unwrap_or(0);
        let at = When::At(UNIX_EPOCH + Duration::from_millis(ms));
        let payload = Bytes::from(row.envelope.clone());
        let message = Scheduled::new(&row.key, &row.event_id, &row.key, route, payload);
        match scheduler.schedule(&message, at).await {
            Ok(_) => out.sent.push(row.seq),
            Err(e) if !is_row_refusal(&e) => {
                out.error = Some(e);
                return false;
            }
            Err(e) => out.poison.push((row.seq, e.to_string())),
        }
    }
    true
}

/// Sends rows of a refused pipeline one at a time; false when the connection failed.
async fn one_by_one(
    transport: &dyn Transport,
    delivery: Delivery,
    rows: &[&RelayRow],
    out: &mut Published,
) -> bool {
    for row in rows {
        let one = [(row.key.clone(), Bytes::from(row.envelope.clone()))];
        match send(transport, delivery, &one).await {
            Ok(()) => out.sent.push(row.seq),
            Err(e) if !is_row_refusal(&e) => {
                out.error = Some(e);
                return false;
            }
            Err(e) => out.poison.push((row.seq, e.to_string())),
        }
    }
    true
}

/// Sends a batch as pipelines of at most [`PIPELINE`] commands, one after another: a
/// transport with several pipelines of one call in flight (Redis's `append_many`) may store a
/// later one before an earlier one that it sends again after a reconnection, and rows must
/// keep their order.
async fn send(
    transport: &dyn Transport,
    delivery: Delivery,
    batch: &[(String, Bytes)],
) -> Result<(), TransportError> {
    for chunk in batch.chunks(PIPELINE) {
        match delivery {
            Delivery::Stream => transport.append_many(chunk).await.map(drop)?,
            Delivery::PubSub => transport.publish_many(chunk).await.map(drop)?,
            Delivery::Sharded => transport.publish_many_sharded(chunk).await.map(drop)?,
        }
    }
    Ok(())
}

/// The most rows sent in one call to the transport: one Redis pipeline.
const PIPELINE: usize = 512;

/// Consecutive rows of one delivery model.
fn runs(rows: &[RelayRow]) -> impl Iterator<Item = &[RelayRow]> {
    rows.chunk_by(|a, b| {
        a.delivery == b.delivery && a.deliver_at.is_some() == b.deliver_at.is_some()
    })
}

/// Why Redis can never take a row, when that is known before sending it.
fn refusal(row: &RelayRow, max_size: usize) -> Option<String> {
    if Delivery::parse(&row.delivery).is_none() {
        return Some(format!("unknown delivery model `{}`", row.delivery));
    }
    if row.envelope.len() > max_size {
        return Some(format!(
            "message of {} bytes exceeds the maximum of {max_size} bytes",
            row.envelope.len()
        ));
    }
    if let Err(why) = crate::event::check_name("channel", &row.key) {
        return Some(why);
    }
    None
}

/// Whether Redis refused the command for the row's own sake, so that sending it again can
/// never succeed: a key holding another type (`WRONGTYPE`), a message too large or a name
/// refused before sending. Everything else (the connection, `OOM`, `MISCONF`, `READONLY`,
/// `NOREPLICAS`, ...) is the server's state, and passes.
fn is_row_refusal(e: &TransportError) -> bool {
    match e.kind() {
        ErrorKind::TooLarge | ErrorKind::Encode | ErrorKind::Config => true,
        ErrorKind::Server => e.to_string().contains("WRONGTYPE"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, delivery: &str, key: &str, size: usize) -> RelayRow {
        RelayRow {
            seq,
            event_id: format!("e{seq}"),
            key: key.to_owned(),
            delivery: delivery.to_owned(),
            envelope: "x".repeat(size),
            deliver_at: None,
        }
    }

    #[test]
    fn rows_of_one_model_go_together_in_order() {
        let rows = [
            row(1, "stream", "events:a", 1),
            row(2, "stream", "events:a", 1),
            row(3, "pubsub", "events:b", 1),
            row(4, "stream", "events:a", 1),
        ];
        let seqs: Vec<Vec<i64>> = runs(&rows)
            .map(|r| r.iter().map(|r| r.seq).collect())
            .collect();
        assert_eq!(seqs, vec![vec![1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn oversized_rows_and_unknown_models_are_refused_before_sending() {
        let big = refusal(&row(1, "stream", "events:a", 11), 10).unwrap();
        assert!(big.contains("11 bytes exceeds the maximum of 10"), "{big}");
        let odd = refusal(&row(1, "carrier pigeon", "events:a", 1), 10).unwrap();
        assert!(odd.contains("unknown delivery model"), "{odd}");
        assert!(refusal(&row(1, "sharded", "events:a", 10), 10).is_none());
    }
}
