//! The rule for event names and channels.
//!
//! The runtime states the same rule in `eventbus/src/event.rs` (`channel_problem`,
//! `event_name_problem`), which checks hand-written events and the keys of keyed channels; a
//! proc-macro crate cannot share code with it, so both are tested over one table of names,
//! `rules_table.in`.

/// Besides whitespace, the characters names and channels must not contain: Redis's glob
/// characters and its escape.
const GLOB_CHARS: &str = "*?[]\\";

/// The first character of `text` that the rule refuses.
pub(crate) fn reserved_char(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| c.is_whitespace() || GLOB_CHARS.contains(c))
}

/// Whether `text` may be a channel: non-empty, no reserved character. Braces are the
/// template's business (`template.rs`).
#[cfg(test)]
fn is_channel(text: &str) -> bool {
    !text.is_empty() && reserved_char(text).is_none()
}

/// The first character of `name` that the rule refuses in an event name: those refused in a
/// channel, and braces, as the default channel `events:<name>` is built from the name.
pub(crate) fn name_reserved_char(name: &str) -> Option<char> {
    reserved_char(name).or_else(|| name.chars().find(|&c| matches!(c, '{' | '}')))
}

/// Whether `name` may be an event name.
#[cfg(test)]
fn is_event_name(name: &str) -> bool {
    !name.is_empty() && name_reserved_char(name).is_none()
}

/// A refused character, described for messages.
pub(crate) fn describe(c: char) -> String {
    if c.is_whitespace() {
        format!("whitespace ({c:?})")
    } else if c == '\\' {
        "a backslash".to_owned()
    } else if matches!(c, '{' | '}') {
        format!("a brace ({c:?})")
    } else {
        format!("the glob character {c:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same table runs against the runtime's statement of the rule.
    #[test]
    fn names_and_channels_agree_with_the_runtime() {
        const NAMES: &[(&str, bool, bool)] = include!("rules_table.in");
        for &(text, name_ok, channel_ok) in NAMES {
            assert_eq!(is_event_name(text), name_ok, "name {text:?}");
            assert_eq!(is_channel(text), channel_ok, "channel {text:?}");
        }
    }
}
