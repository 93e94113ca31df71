//! `eventbus dlq show TYPE ID`.

use eventbus::{DeadLetter, EventBus};

use super::ShowArgs;
use super::letters::{fetch, payload_text, to_json};
use crate::exit::CliError;
use crate::session::connect;
use crate::style::Palette;

/// Runs `dlq show`.
pub(super) async fn run(url: &str, args: ShowArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let letter = fetch(&session, &args.event_type, &args.entry_id).await;
    session.close().await;
    let letter = letter?;
    if args.json {
        println!("{}", to_json(&letter));
    } else {
        print!("{}", text(&letter));
    }
    Ok(())
}

fn text(l: &DeadLetter) -> String {
    let p = Palette::new(crate::terminal::colour());
    let rows = [
        ("entry", l.entry_id.clone()),
        ("type", l.event_type.clone()),
        ("channel", l.channel.clone()),
        ("handler", l.handler.clone()),
        ("attempts", l.attempts.to_string()),
        ("durable", if l.durable { "yes" } else { "no" }.to_owned()),
        ("error", l.error.clone()),
    ];
    let mut out = String::new();
    for (name, value) in rows {
        out.push_str(&format!("{} {value}\n", p.dim(&format!("{name:<9}"))));
    }
    out.push_str(&format!("{}\n", p.dim("payload")));
    for line in payload_text(l).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
