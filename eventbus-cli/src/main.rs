//! The `eventbus` command-line tool: follow events live or from durable streams, publish
//! events as the bus would, watch channels, manage consumer groups and dead letters.
//!
//! Run `eventbus --help` for the commands and the exit codes.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod confirm;
mod envelope;
mod exit;
mod incoming;
mod render;
mod session;
mod style;
mod terminal;
mod url;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::parse_failure(&e),
    };
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventbus: error: {e}");
            e.code.into()
        }
    }
}
