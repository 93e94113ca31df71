//! The command line: global options and the subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::dlq::DlqCommand;
use crate::commands::groups::GroupsCommand;
use crate::commands::monitor::MonitorArgs;
use crate::commands::publish::PublishArgs;
use crate::commands::scheduled::ScheduledCommand;
use crate::commands::tail::TailArgs;
use crate::exit::{Code, EXIT_CODES_HELP};
use crate::url::DEFAULT_URL;

const EXAMPLES: &str = "\
Examples:
  eventbus tail                                  # every event on events:*
  eventbus tail user_created --pretty            # one type, multi-line
  eventbus tail --stream order_placed --from 0   # a durable stream from its start
  eventbus publish user_created '{\"user_id\":1}'
  eventbus monitor --once --json
  eventbus dlq list order_placed
  eventbus groups list order_placed              # consumer groups: pending, lag
  eventbus groups move order_placed billing:order_placed billing:charge
  eventbus scheduled list                        # events waiting for their time
  EVENTBUS_URL=redis://:secret@10.0.0.5:6379 eventbus monitor";

/// Tail, publish and inspect eventbus events on Redis.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, after_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}"))]
pub(crate) struct Cli {
    /// The server's URL.
    #[arg(
        long,
        global = true,
        env = "EVENTBUS_URL",
        default_value = DEFAULT_URL,
        hide_env_values = true,
        help = "The server: redis://[USER:PASSWORD@]HOST:PORT[/DB], rediss://... (TLS builds) \
                or redis+unix:///path/to/socket"
    )]
    pub(crate) url: String,

    /// A PEM file of the root certificate(s) a `rediss://` server's certificate must chain to,
    /// instead of the system's.
    #[arg(long, global = true, env = "EVENTBUS_TLS_CA_CERT", value_name = "FILE")]
    pub(crate) tls_ca_cert: Option<std::path::PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Follow envelopes live from pub/sub channels, or from durable streams with --stream.
    Tail(TailArgs),
    /// Publish one event in a CloudEvents envelope, as a Rust service would.
    Publish(PublishArgs),
    /// Channels, subscribers, patterns and durable streams with their consumer groups.
    Monitor(MonitorArgs),
    /// Dead letters: list, show, replay or purge them.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Consumer groups of durable streams: list, show, move (rename) or delete them.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Scheduled events: list the queues and what waits in them, show or cancel one.
    #[command(subcommand)]
    Scheduled(ScheduledCommand),
}

/// Prints a parse error or the help, and returns the exit code: 0 for `--help` and
/// `--version`, 1 for a usage error (not clap's 2, which the tool uses for failures).
pub(crate) fn parse_failure(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        Code::Usage.into()
    } else {
        ExitCode::SUCCESS
    }
}
