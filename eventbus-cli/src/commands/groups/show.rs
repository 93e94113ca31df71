//! `eventbus groups show STREAM GROUP`: the group's position, its consumers and its oldest
//! pending entries.

use std::fmt::Write;

use eventbus::EventBus;
use redis::streams::{
    StreamInfoConsumer, StreamInfoConsumersReply, StreamInfoGroup, StreamPendingCountReply,
    StreamPendingId,
};
use serde_json::{Value, json};

use super::ShowArgs;
use super::info::{group, lag, stream_key, to_json};
use crate::exit::CliError;
use crate::session::{Session, connect};
use crate::style::Palette;

/// How many pending entries are shown, oldest first.
const OLDEST: usize = 10;

/// One group in detail.
#[derive(Debug)]
struct Detail {
    key: String,
    group: StreamInfoGroup,
    consumers: Vec<StreamInfoConsumer>,
    oldest: Vec<StreamPendingId>,
}

/// Runs `groups show`.
pub(super) async fn run(url: &str, args: ShowArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let detail = detail(&session, &stream_key(&args.stream), &args.group).await;
    session.close().await;
    let detail = detail?;
    if args.json {
        println!("{}", detail.to_json());
    } else {
        print!("{}", detail.text(Palette::new(crate::terminal::colour())));
    }
    Ok(())
}

async fn detail(session: &Session, key: &str, name: &str) -> Result<Detail, CliError> {
    let mut conn = session.raw().await?;
    let group = group(session, &mut conn, key, name).await?;
    let consumers: StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(key)
        .arg(name)
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("XINFO CONSUMERS", &e))?;
    let pending: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(key)
        .arg(name)
        .arg("-")
        .arg("+")
        .arg(OLDEST)
        .query_async(&mut conn)
        .await
        .map_err(|e| session.command_error("XPENDING", &e))?;
    Ok(Detail {
        key: key.to_owned(),
        group,
        consumers: consumers.consumers,
        oldest: pending.ids,
    })
}

impl Detail {
    fn to_json(&self) -> Value {
        let mut out = to_json(&self.key, &self.group);
        let consumers: Vec<Value> = self
            .consumers
            .iter()
            .map(|c| json!({"name": c.name, "pending": c.pending, "idle_ms": c.idle}))
            .collect();
        let oldest: Vec<Value> = self
            .oldest
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "consumer": p.consumer,
                    "idle_ms": p.last_delivered_ms,
                    "deliveries": p.times_delivered,
                })
            })
            .collect();
        out["consumer_list"] = Value::Array(consumers);
        out["oldest_pending"] = Value::Array(oldest);
        out
    }

    fn text(&self, p: Palette) -> String {
        let g = &self.group;
        let mut out = String::new();
        let _ = writeln!(out, "{} on {}", p.title(&g.name), self.key);
        let read = g.entries_read.map_or("?".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "  last delivered {}  entries read {read}  lag {}  pending {}",
            g.last_delivered_id,
            lag(g),
            g.pending
        );
        let _ = writeln!(
            out,
            "\n{}  ({})",
            p.title("consumers"),
            self.consumers.len()
        );
        let width = self
            .consumers
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        let width = width.max(8);
        let header = format!("{:<width$}  {:>8}  {:>10}", "consumer", "pending", "idle");
        let _ = writeln!(out, "  {}", p.dim(&header));
        for c in &self.consumers {
            let idle = idle(c.idle);
            let _ = writeln!(out, "  {:<width$}  {:>8}  {idle:>10}", c.name, c.pending);
        }
        self.pending_text(&mut out, p);
        out
    }

    fn pending_text(&self, out: &mut String, p: Palette) {
        let title = p.title("oldest pending entries");
        let _ = writeln!(
            out,
            "\n{title}  ({} of {})",
            self.oldest.len(),
            self.group.pending
        );
        if self.oldest.is_empty() {
            return;
        }
        let width = self
            .oldest
            .iter()
            .map(|e| e.consumer.len())
            .max()
            .unwrap_or(0);
        let width = width.max(8);
        let header = format!(
            "{:<22}  {:<width$}  {:>10}  deliveries",
            "entry", "consumer", "idle"
        );
        let _ = writeln!(out, "  {}", p.dim(&header));
        for e in &self.oldest {
            let idle = idle(e.last_delivered_ms);
            let _ = writeln!(
                out,
                "  {:<22}  {:<width$}  {idle:>10}  {}",
                e.id, e.consumer, e.times_delivered
            );
        }
    }
}

/// Milliseconds as `850ms`, `12.5s`, `3m04s` or `5h07m`.
fn idle(ms: usize) -> String {
    let secs = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn idle_times_read_well() {
        assert_eq!(super::idle(850), "850ms");
        assert_eq!(super::idle(12_500), "12.5s");
        assert_eq!(super::idle(184_000), "3m04s");
        assert_eq!(super::idle(18_420_000), "5h07m");
    }
}
