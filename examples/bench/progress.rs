//! What the bench is measuring now: a spinner with the stage and the time spent on a terminal,
//! one line per stage otherwise (in CI and when piped), so logs stay readable.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The spinner, when stderr is a terminal and `CI` is not set.
fn spinner() -> Option<&'static ProgressBar> {
    static SPINNER: OnceLock<Option<ProgressBar>> = OnceLock::new();
    SPINNER
        .get_or_init(|| {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            if ci || !std::io::stderr().is_terminal() {
                return None;
            }
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        })
        .as_ref()
}

/// Starts a stage.
pub(crate) fn stage(what: impl Into<String>) {
    let what = what.into();
    match spinner() {
        Some(bar) => {
            bar.println(format!("  {what}"));
            bar.set_message(what);
        }
        None => eprintln!("{what}"),
    }
}

/// Clears the spinner before the table is printed.
pub(crate) fn finish() {
    if let Some(bar) = spinner() {
        bar.finish_and_clear();
    }
}
