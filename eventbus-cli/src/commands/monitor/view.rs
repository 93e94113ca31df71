//! The text form of a monitor snapshot.

use std::fmt::Write;

use super::snapshot::Snapshot;
use crate::style::Palette;

/// The snapshot as a few aligned tables.
pub(super) fn text(s: &Snapshot, p: Palette) -> String {
    let mut out = String::new();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    let _ = writeln!(
        out,
        "{}  {now}  ping {:.2} ms",
        p.title("eventbus monitor"),
        s.ping_ms
    );
    channels(&mut out, s, p);
    streams(&mut out, s, p);
    scheduled(&mut out, s, p);
    if let Some(outbox) = &s.outbox {
        outbox.text(&mut out, p);
    }
    out.trim_end().to_owned()
}

/// The schedule queues, when there are any: how many wait, and when the first is due.
fn scheduled(out: &mut String, s: &Snapshot, p: Palette) {
    if s.scheduled.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", p.title("scheduled"));
    let width = s
        .scheduled
        .iter()
        .map(|q| q.queue.len())
        .max()
        .unwrap_or(0)
        .max(5);
    for q in &s.scheduled {
        let next = match super::snapshot::due_in_ms(q) {
            None => "-".to_owned(),
            Some(ms) if ms < 0 => format!("first overdue by {} ms", -ms),
            Some(ms) => format!("first due in {:.1} s", ms as f64 / 1000.0),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:>8} waiting  {next}",
            q.queue, q.waiting
        );
    }
}

fn channels(out: &mut String, s: &Snapshot, p: Palette) {
    let _ = writeln!(
        out,
        "\n{}  ({} active, {} pattern subscriptions)",
        p.title("channels"),
        s.channels.len(),
        s.patterns
    );
    let width = s
        .channels
        .iter()
        .map(|(c, _)| c.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        out,
        "  {}",
        p.dim(&format!("{:<width$}  subscribers", "channel"))
    );
    for (channel, n) in &s.channels {
        let _ = writeln!(out, "  {channel:<width$}  {n:>11}");
    }
}

fn streams(out: &mut String, s: &Snapshot, p: Palette) {
    let _ = writeln!(out, "\n{}  ({})", p.title("streams"), s.streams.len());
    let header = format!(
        "{:<28} {:>8}  {:<28} {:>9} {:>8} {:>6}  last delivered",
        "stream", "length", "group", "consumers", "pending", "lag"
    );
    let _ = writeln!(out, "  {}", p.dim(&header));
    for stream in &s.streams {
        if stream.groups.is_empty() {
            let _ = writeln!(
                out,
                "  {:<28} {:>8}  (no groups)",
                stream.key, stream.length
            );
        }
        for g in &stream.groups {
            let lag = g.lag.map_or_else(|| "?".to_owned(), |l| l.to_string());
            let _ = writeln!(
                out,
                "  {:<28} {:>8}  {:<28} {:>9} {:>8} {:>6}  {}",
                stream.key, stream.length, g.name, g.consumers, g.pending, lag, g.last_delivered_id
            );
        }
    }
}
