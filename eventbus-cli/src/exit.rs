//! Exit codes a script can rely on, and the error that carries one.

use std::fmt;
use std::process::ExitCode;

/// The documented exit codes, shown at the end of `eventbus --help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  usage error: bad arguments, invalid JSON data, a file that cannot be read
  2  a Redis command failed after connecting, or output could not be written
  3  cannot connect: invalid URL, server unreachable, credentials refused
  4  not found: no such dead letter, stream or consumer group
  5  timeout: --timeout passed and nothing was received
  6  confirmation refused: answered no, or stdin is not a terminal and --yes is missing
  7  conflict: groups move to a group that exists, or from one with pending entries,
     without --force";

/// Why the tool stopped, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Bad arguments or input.
    Usage = 1,
    /// A command failed after connecting.
    Failed = 2,
    /// The server could not be reached or refused us.
    Connect = 3,
    /// What was asked for does not exist.
    NotFound = 4,
    /// Nothing arrived before `--timeout`.
    Timeout = 5,
    /// A destructive action was not confirmed.
    Refused = 6,
    /// The server's state forbids the action unless `--force` is given.
    Conflict = 7,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code as u8)
    }
}

/// An error with the exit code it ends the tool with. Its message never holds a password.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The exit code.
    pub(crate) code: Code,
    message: String,
}

impl CliError {
    /// An error with a code and a message.
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// A usage error (exit code 1).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new(Code::Usage, message)
    }

    /// A failure after connecting (exit code 2).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        CliError::new(Code::Failed, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::failed(format!("writing output failed: {e}"))
    }
}

/// The error and its causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
