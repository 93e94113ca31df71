//! `eventbus dlq replay TYPE [ID...]`: publishes letters again through the bus and removes
//! them.

use eventbus::{DeadLetter, EventBus};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::ActionArgs;
use super::letters::chosen;
use crate::confirm::confirm;
use crate::exit::{CliError, chain};
use crate::session::{Session, connect};

/// From how many letters a replay shows a progress bar (on a terminal).
const PROGRESS_FROM: usize = 20;

/// Runs `dlq replay`.
pub(super) async fn run(url: &str, args: ActionArgs) -> Result<(), CliError> {
    let session = connect(url, EventBus::builder()).await?;
    let result = replay_chosen(&session, &args).await;
    session.close().await;
    let replayed = result?;
    if args.json {
        println!("{}", json!({"type": args.event_type, "replayed": replayed}));
    } else {
        println!(
            "replayed {replayed} dead letters of type {}",
            args.event_type
        );
    }
    Ok(())
}

async fn replay_chosen(session: &Session, args: &ActionArgs) -> Result<usize, CliError> {
    let letters = chosen(session, args).await?;
    if letters.is_empty() {
        return Ok(0);
    }
    let question = format!(
        "Replay {} dead letters of type {}?",
        letters.len(),
        args.event_type
    );
    confirm(&question, args.yes)?;
    replay_all(session, &letters).await
}

async fn replay_all(session: &Session, letters: &[DeadLetter]) -> Result<usize, CliError> {
    let bar = progress(letters.len());
    for (done, letter) in letters.iter().enumerate() {
        if let Err(e) = session.bus.replay_dead_letter(letter).await {
            bar.abandon();
            return Err(CliError::failed(format!(
                "replaying dead letter {} failed after {done} replayed: {}",
                letter.entry_id,
                chain(&e)
            )));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(letters.len())
}

/// A progress bar on stderr for long replays on a terminal; hidden otherwise.
fn progress(len: usize) -> ProgressBar {
    if len < PROGRESS_FROM || !crate::terminal::stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}
