//! `eventbus groups`: the consumer groups of the durable streams `events:<type>`, listed,
//! shown, moved to another name and deleted.

mod delete;
mod info;
mod list;
mod move_group;
mod show;

use clap::{Args, Subcommand};

use crate::exit::CliError;

const LIST_EXAMPLES: &str = "\
Examples:
  eventbus groups list                                 # every stream events:*
  eventbus groups list order_placed                    # one type (or events:order_placed)
  eventbus groups list --stream audit:log              # a stream key taken as it is
  eventbus groups list --json | jq 'select(.pending > 0)'

JSON: one object per group and line: {\"stream\",\"group\",\"consumers\",\"pending\",\"lag\",
\"entries_read\",\"last_delivered_id\"} (lag and entries_read are null when the server cannot tell).
A stream named on the line that does not exist exits with 4.";

const SHOW_EXAMPLES: &str = "\
Examples:
  eventbus groups show order_placed billing:order_placed
  eventbus groups show events:order_placed billing:charge --json

Shows the group's position, its consumers (XINFO CONSUMERS: pending, idle) and its 10 oldest
pending entries (XPENDING - + 10): delivered to a consumer, not acknowledged yet.
JSON: {\"stream\",\"group\",\"consumers\",\"pending\",\"lag\",\"entries_read\",\"last_delivered_id\",
\"consumer_list\":[{\"name\",\"pending\",\"idle_ms\"}],
\"oldest_pending\":[{\"id\",\"consumer\",\"idle_ms\",\"deliveries\"}]}.
Exits with 4 when the stream or the group does not exist.";

const MOVE_EXAMPLES: &str = "\
Examples:
  eventbus groups move order_placed billing:order_placed billing:charge
  eventbus groups move events:order_placed billing:order_placed billing:charge --yes

Creates NEW at OLD's last-delivered id (XGROUP CREATE, keeping the entries-read count so lag
stays right), then destroys OLD (XGROUP DESTROY), both in one server-side script: NEW reads
exactly the entries OLD had not read yet. Stop the services reading OLD first.

OLD's pending entries (delivered to a consumer, never acknowledged) are NOT carried over: NEW
starts after them and will not deliver them. A move from a group with pending entries is
refused (exit 7, saying how many) unless --force is given, which drops them; see them first
with `eventbus groups show STREAM OLD`. They are not appended to the stream again, since every
other group on the stream would then receive them a second time.

When NEW exists (a service already started with the new name) the move is refused (exit 7)
unless --force is given: NEW's position is then set to OLD's (XGROUP SETID), its consumers and
its own pending entries kept. Asks for confirmation on a terminal; --yes skips it, and is
required when stdin is not a terminal (else exit 6).";

const DELETE_EXAMPLES: &str = "\
Examples:
  eventbus groups delete order_placed billing:old_handler
  eventbus groups delete events:order_placed billing:old_handler --yes

Destroys the group (XGROUP DESTROY) with its consumers and pending entries; the stream's
entries stay. Exits with 4 when the stream or the group does not exist. Asks for confirmation
on a terminal; --yes skips it, and is required when stdin is not a terminal (else exit 6).";

/// The `groups` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List the consumer groups of the durable streams (all `events:*`, or those named).
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show one group: its position, consumers and oldest pending entries.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Rename a group keeping its position: NEW at OLD's last-delivered id, then OLD destroyed.
    #[command(after_help = MOVE_EXAMPLES)]
    Move(MoveArgs),
    /// Destroy a consumer group (asks first).
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(DeleteArgs),
}

/// Arguments of `groups list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Event types or stream keys (`order_placed` or `events:order_placed`), or globs;
    /// none means every stream `events:*`.
    #[arg(value_name = "TYPE")]
    types: Vec<String>,
    /// A stream key, taken as it is (no `events:` added); may be repeated.
    #[arg(long = "stream", value_name = "KEY")]
    keys: Vec<String>,
    /// One JSON object per group, one per line.
    #[arg(long)]
    json: bool,
}

/// Arguments of `groups show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The event type or stream key (`order_placed` or `events:order_placed`).
    #[arg(value_name = "STREAM")]
    stream: String,
    /// The consumer group.
    #[arg(value_name = "GROUP")]
    group: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `groups move`.
#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    /// The event type or stream key (`order_placed` or `events:order_placed`).
    #[arg(value_name = "STREAM")]
    stream: String,
    /// The group to move from; destroyed.
    #[arg(value_name = "OLD")]
    old: String,
    /// The group to move to; created at OLD's last-delivered id.
    #[arg(value_name = "NEW")]
    new: String,
    /// Move even when NEW exists (its position is set to OLD's) or OLD has pending entries
    /// (they are dropped).
    #[arg(long)]
    force: bool,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `groups delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The event type or stream key (`order_placed` or `events:order_placed`).
    #[arg(value_name = "STREAM")]
    stream: String,
    /// The consumer group.
    #[arg(value_name = "GROUP")]
    group: String,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `eventbus groups` subcommand.
pub(crate) async fn run(url: &str, command: GroupsCommand) -> Result<(), CliError> {
    match command {
        GroupsCommand::List(args) => list::run(url, args).await,
        GroupsCommand::Show(args) => show::run(url, args).await,
        GroupsCommand::Move(args) => move_group::run(url, args).await,
        GroupsCommand::Delete(args) => delete::run(url, args).await,
    }
}
