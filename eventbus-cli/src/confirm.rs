//! Asking before destructive actions.

use std::io::{BufRead, Write};

use crate::exit::{CliError, Code};
use crate::terminal::stdin_is_terminal;

/// Goes on when `yes` (`--yes`) is given or the user answers yes on a terminal; refuses
/// (exit code 6) otherwise, without asking when stdin is not a terminal.
pub(crate) fn confirm(question: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !stdin_is_terminal() {
        return Err(CliError::new(
            Code::Refused,
            format!("{question} Refused: stdin is not a terminal; pass --yes to confirm"),
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::new(
            Code::Refused,
            "not confirmed: nothing was done",
        )),
    }
}
