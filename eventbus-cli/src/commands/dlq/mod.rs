//! `eventbus dlq`: the dead letters kept in the streams `eventbus:dead:<type>`.

mod letters;
mod list;
mod purge;
mod replay;
mod show;

use clap::{Args, Subcommand};

use crate::exit::CliError;

const LIST_EXAMPLES: &str = "\
Examples:
  eventbus dlq list order_placed
  eventbus dlq list order_placed --limit 10 --json | jq -r .entry_id";

const SHOW_EXAMPLES: &str = "\
Examples:
  eventbus dlq show order_placed 1733390000000-0
  eventbus dlq show order_placed 1733390000000-0 --json
Exits with 4 when there is no such dead letter.";

const REPLAY_EXAMPLES: &str = "\
Examples:
  eventbus dlq replay order_placed                     # all of them, after asking
  eventbus dlq replay order_placed 1733390000000-0 --yes
A replayed letter is published again on its channel (appended to its stream when it came
from one) and removed. On a terminal a progress bar shows long replays.";

const PURGE_EXAMPLES: &str = "\
Examples:
  eventbus dlq purge order_placed                      # all of them, after asking
  eventbus dlq purge order_placed 1733390000000-0 --yes
  eventbus dlq purge order_placed --yes < /dev/null    # scripts must pass --yes (else exit 6)";

/// The `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List the dead letters of an event type, oldest first.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Print one dead letter in full.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Publish dead letters again and remove them (asks first).
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(ActionArgs),
    /// Delete dead letters without replaying them (asks first).
    #[command(after_help = PURGE_EXAMPLES)]
    Purge(ActionArgs),
}

/// Arguments of `dlq list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The event type.
    #[arg(value_name = "TYPE")]
    event_type: String,
    /// At most this many letters.
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: usize,
    /// One JSON object per letter, one per line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `dlq show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The event type.
    #[arg(value_name = "TYPE")]
    event_type: String,
    /// The dead letter's entry id, as `dlq list` shows it.
    #[arg(value_name = "ID")]
    entry_id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `dlq replay` and `dlq purge`.
#[derive(Debug, Args)]
pub(crate) struct ActionArgs {
    /// The event type.
    #[arg(value_name = "TYPE")]
    event_type: String,
    /// The entry ids; none means every letter of the type (up to --limit).
    #[arg(value_name = "ID")]
    entry_ids: Vec<String>,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
    /// With no ids, at most this many letters (oldest first).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    limit: usize,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `eventbus dlq` subcommand.
pub(crate) async fn run(url: &str, command: DlqCommand) -> Result<(), CliError> {
    match command {
        DlqCommand::List(args) => list::run(url, args).await,
        DlqCommand::Show(args) => show::run(url, args).await,
        DlqCommand::Replay(args) => replay::run(url, args).await,
        DlqCommand::Purge(args) => purge::run(url, args).await,
    }
}
