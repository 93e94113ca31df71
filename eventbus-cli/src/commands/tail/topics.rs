//! What `tail`'s arguments name: an event type, a channel, or a glob.

use eventbus::Topic;

/// The prefix of every event channel and stream key.
pub(crate) const PREFIX: &str = "events:";

/// `user_created` → `events:user_created`; a name with the prefix is kept as it is.
pub(crate) fn channel_name(arg: &str) -> String {
    if arg.starts_with(PREFIX) {
        arg.to_owned()
    } else {
        format!("{PREFIX}{arg}")
    }
}

/// Whether a name is a glob (`*`, `?` or `[`), subscribed with PSUBSCRIBE.
pub(crate) fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// The topics to subscribe: `events:*` when none are named.
pub(super) fn topics(args: &[String]) -> Vec<Topic> {
    names(args)
        .into_iter()
        .map(|name| {
            if is_glob(&name) {
                Topic::pattern(name)
            } else {
                Topic::channel(name)
            }
        })
        .collect()
}

/// The channel names and globs, with the prefix: `events:*` when none are named.
pub(super) fn names(args: &[String]) -> Vec<String> {
    if args.is_empty() {
        return vec![format!("{PREFIX}*")];
    }
    args.iter().map(|a| channel_name(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_channels_and_globs_patterns() {
        assert_eq!(
            topics(&["user_created".into(), "events:user.*".into()]),
            vec![
                Topic::channel("events:user_created"),
                Topic::pattern("events:user.*")
            ]
        );
        assert_eq!(topics(&[]), vec![Topic::pattern("events:*")]);
    }
}
