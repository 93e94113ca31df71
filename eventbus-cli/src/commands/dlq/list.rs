//! `eventbus dlq list TYPE`.

use std::fmt::Write;

use eventbus::{DeadLetter, EventBus};

use super::ListArgs;
use super::letters::{list, to_json};
use crate::exit::CliError;
use crate::session::connect;
use crate::style::Palette;

/// Runs `dlq list`.
pub(super) async fn run(url: &str, args: ListArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let letters = list(&session, &args.event_type, args.limit).await;
    session.close().await;
    let letters = letters?;
    if args.json {
        for letter in &letters {
            println!("{}", to_json(letter));
        }
    } else {
        print!("{}", table(&args.event_type, &letters));
    }
    Ok(())
}

fn table(event_type: &str, letters: &[DeadLetter]) -> String {
    let p = Palette::new(crate::terminal::colour());
    if letters.is_empty() {
        return format!("no dead letters of type {event_type}\n");
    }
    let mut out = String::new();
    let header = format!(
        "{:<22} {:>8} {:<7} {:<30} error",
        "entry", "attempts", "durable", "handler"
    );
    let _ = writeln!(out, "{}", p.dim(&header));
    for l in letters {
        let durable = if l.durable { "yes" } else { "no" };
        let error: String = l
            .error
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect();
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:<7} {:<30} {error}",
            l.entry_id, l.attempts, durable, l.handler
        );
    }
    let _ = writeln!(out, "{} dead letters of type {event_type}", letters.len());
    out
}
