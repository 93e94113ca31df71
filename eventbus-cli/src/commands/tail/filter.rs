//! `--type` and `--source`: which envelopes `tail` shows.

use crate::incoming::Incoming;
use crate::render::Printer;

/// The envelopes to show; decode failures are always shown.
#[derive(Debug, Clone, Default)]
pub(super) struct Filter {
    event_type: Option<String>,
    source: Option<String>,
}

impl Filter {
    /// A filter on type and source, each optional.
    pub(super) fn new(event_type: Option<String>, source: Option<String>) -> Self {
        Filter { event_type, source }
    }

    /// The text for a message, or `None` when the filter leaves it out.
    pub(super) fn render(&self, printer: &Printer, incoming: &Incoming) -> Option<String> {
        match incoming.decode() {
            Ok(envelope) => {
                let type_ok = self
                    .event_type
                    .as_deref()
                    .is_none_or(|t| t == envelope.event_type());
                let source_ok = self
                    .source
                    .as_deref()
                    .is_none_or(|s| s == envelope.source());
                (type_ok && source_ok).then(|| printer.envelope(incoming, &envelope))
            }
            Err(reason) => Some(printer.failure(incoming, &reason)),
        }
    }
}
