//! Colours for terminal output, off unless [`terminal::colour`](crate::terminal::colour) says so.

use anstyle::{AnsiColor, Style};

/// The styles of the parts of the output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Palette {
    on: bool,
}

impl Palette {
    /// A palette that colours when `on`.
    pub(crate) fn new(on: bool) -> Self {
        Palette { on }
    }

    fn paint(self, style: Style, text: &str) -> String {
        if self.on {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    /// An event type or a heading.
    pub(crate) fn title(self, text: &str) -> String {
        self.paint(AnsiColor::Cyan.on_default().bold(), text)
    }

    /// A label or a secondary value.
    pub(crate) fn dim(self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    /// A failure.
    pub(crate) fn error(self, text: &str) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), text)
    }
}
