//! The subcommands, one module each.

pub(crate) mod dlq;
pub(crate) mod groups;
pub(crate) mod monitor;
pub(crate) mod publish;
mod scan;
pub(crate) mod scheduled;
pub(crate) mod tail;

use crate::cli::{Cli, Command};
use crate::exit::CliError;

/// Runs the command the line asks for.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    if let Some(path) = &cli.tls_ca_cert {
        crate::session::trust_root_certificate(path)?;
    }
    match cli.command {
        Command::Tail(args) => tail::run(&cli.url, args).await,
        Command::Publish(args) => publish::run(&cli.url, args).await,
        Command::Monitor(args) => monitor::run(&cli.url, args).await,
        Command::Dlq(command) => dlq::run(&cli.url, command).await,
        Command::Groups(command) => groups::run(&cli.url, command).await,
        Command::Scheduled(command) => scheduled::run(&cli.url, command).await,
    }
}

/// Parses a positive number of seconds, such as `10` or `0.5`.
pub(crate) fn seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 {
        Ok(std::time::Duration::from_secs_f64(secs))
    } else {
        Err(format!("`{text}`: the number of seconds must be above 0"))
    }
}
