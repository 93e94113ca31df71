//! The [`Event`] trait: what makes a type publishable and handleable.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A typed event: a value that can be published on the bus and handled by its handlers.
///
/// This trait is the contract between a Rust type and the wire: the event's
/// [`TYPE`](Event::TYPE) is written into every envelope's `type` attribute and checked on the
/// way in, and the event's [`channel`](Event::channel) is where it is published.
///
/// Implement it with `#[derive(Event)]` (the `derive` feature, on by default):
///
/// ```
/// use eventbus::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, Event)]
/// struct UserCreated { user_id: u64, name: String }
///
/// assert_eq!(UserCreated::TYPE, "user_created");
/// assert_eq!(UserCreated::CHANNEL, "events:user_created");
/// ```
///
/// | attribute | meaning | default |
/// |---|---|---|
/// | `#[event(name = "...")]` | the event type | the type's name in snake_case |
/// | `#[event(version = N)]` | the schema version, sent as `dataversion` | `1` |
/// | `#[event(channel = "...")]` | the channel; `{field}` placeholders make a keyed channel | `events:<name>` |
/// | `#[event(crate = "...")]` | the path of this crate, for re-exports | `::eventbus` |
/// | `#[event(durable)]` | durable delivery: a Redis stream, consumer groups, at least once (not with a keyed channel) | broadcast over pub/sub |
///
/// # Keyed channels
///
/// A channel template with `{field}` placeholders (`user:{user_id}:notifications`) publishes each
/// value on its own channel (`user:42:notifications`), filled from the fields' `Display` values.
/// [`PATTERN`](Event::PATTERN) then holds the glob pattern that matches every key
/// (`user:*:notifications`); handlers subscribe to it unless they choose keys with
/// [`Topic::keyed`](crate::Topic::keyed).
///
/// # Names, channels and keys
///
/// One rule, checked the same way everywhere:
///
/// - **Channels** (fixed channels, the text of a template around its placeholders, and the
///   channels given to [`Topic::channel`](crate::Topic::channel)) are non-empty and free of whitespace and of the
///   Redis glob characters `* ? [ ] \`, so that an exact channel is never mistaken for a
///   pattern and a template's text can be copied into its pattern.
/// - **Event names** follow the channel rule and also refuse braces, as the default channel
///   `events:<name>` is built from them.
/// - **Keys**, the values that fill a template's placeholders, follow the channel rule; and
///   where another key follows, the text that separates them must first appear right after
///   the key (in `a:{x}:{y}`, `x` may not contain `:`), so that two different sets of keys
///   never share a channel. For the same reason placeholders may not be side by side
///   (`{a}{b}`).
///
/// `#[derive(Event)]` checks names and templates at compile time. Keys are values, so they are
/// checked when they are used: [`try_channel`](Event::try_channel) (which the bus calls to
/// publish) and [`Topic::try_keyed`](crate::Topic::try_keyed) return a [`ChannelError`] naming the field, and
/// [`Topic::keyed`](crate::Topic::keyed) panics with it. Keys are never escaped or rewritten: the channel a service
/// in another language computes is the one it reads.
///
/// # Implementing it by hand
///
/// A hand-written implementation chooses its [`TYPE`](Event::TYPE) freely. Its channel is
/// checked by the rule above when a value is published (the default
/// [`try_channel`](Event::try_channel) checks what [`channel`](Event::channel) returns) and when
/// a handler subscribes to it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventbus event",
    label = "this type does not implement `eventbus::Event`",
    note = "add `#[derive(eventbus::Event, serde::Serialize, serde::Deserialize)]` to the type's definition"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event type: the `type` attribute of the envelope (`"user_created"`).
    const TYPE: &'static str;

    /// The schema version of the event's data, sent as the `dataversion` attribute.
    const VERSION: u32 = 1;

    /// The channel, or for keyed events the channel template (`"user:{user_id}:notifications"`).
    const CHANNEL: &'static str;

    /// Whether the type travels durably: appended to the Redis stream named by its channel and
    /// read by one consumer group per handler, at least once (`#[event(durable)]`). `false`:
    /// broadcast over pub/sub, at most once.
    const DURABLE: bool = false;

    /// For keyed events, the glob pattern that matches the channel of every key
    /// (`"user:*:notifications"`); `None` for events with one fixed channel.
    const PATTERN: Option<&'static str> = None;

    /// The JSON Schema (draft 7) of the event's data, with the `schema` feature (the derive
    /// fills it in from `schemars::JsonSchema`); `None` otherwise. Shared definitions are
    /// referenced as `#/components/schemas/<name>` and listed in the schema's
    /// `components.schemas`, ready for an AsyncAPI document.
    fn data_schema() -> Option<serde_json::Value> {
        None
    }

    /// The type's number in this process, given on first use (the derive fills it in): where
    /// a bus keeps the type's counters. `None` makes the bus look them up by name.
    #[doc(hidden)]
    fn __type_index() -> Option<usize> {
        None
    }

    /// A copy of this event when its type is `Clone` (the derive fills it in), so that an event
    /// decoded once is copied for each further handler of its type instead of decoded again.
    /// `None` makes each handler decode its own.
    #[doc(hidden)]
    fn __clone_event(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// The channel this value is published on, unchecked.
    ///
    /// For events with a fixed channel this is [`CHANNEL`](Event::CHANNEL); keyed events fill the
    /// template from the value's fields, whatever their keys hold. Publishing uses
    /// [`try_channel`](Event::try_channel), which checks the keys.
    fn channel(&self) -> Cow<'static, str> {
        Cow::Borrowed(Self::CHANNEL)
    }

    /// The channel this value is published on, checked by the rule for channels and keys (see
    /// [Names, channels and keys](Event#names-channels-and-keys)).
    ///
    /// ```
    /// use eventbus::Event;
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize, Event)]
    /// #[event(channel = "user:{user_id}:notifications")]
    /// struct Notification { user_id: String, text: String }
    ///
    /// let ok = Notification { user_id: "42".into(), text: String::new() };
    /// assert_eq!(ok.try_channel().unwrap(), "user:42:notifications");
    ///
    /// let bad = Notification { user_id: "4 2".into(), text: String::new() };
    /// let err = bad.try_channel().unwrap_err();
    /// assert!(err.to_string().starts_with("channel key `user_id` is \"4 2\", which contains whitespace"));
    /// ```
    ///
    /// The derive fills and checks the template; the default checks what
    /// [`channel`](Event::channel) returns.
    fn try_channel(&self) -> Result<Cow<'static, str>, ChannelError> {
        let channel = self.channel();
        match channel_problem(&channel) {
            None => Ok(channel),
            Some(problem) => Err(ChannelError::Channel {
                channel: channel.into_owned(),
                problem,
            }),
        }
    }
}

/// Why an event's channel, or a keyed [`Topic`](crate::Topic), could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A key breaks the key rule (see [`Event`](Event#names-channels-and-keys)).
    #[error("channel key `{field}` is {value:?}, which {problem}")]
    Key {
        /// The placeholder the key fills: a field name, or an index in a tuple struct.
        field: String,
        /// The key, as its `Display` wrote it.
        value: String,
        /// What is wrong with it.
        problem: String,
        /// The channel these keys would make, unchecked.
        channel: String,
    },
    /// A channel breaks the channel rule (from a hand-written [`Event::channel`]).
    #[error("channel {channel:?} {problem}")]
    Channel {
        /// The channel.
        channel: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A channel template that cannot be filled: malformed braces, placeholders side by side,
    /// or a number of keys that differs from its number of placeholders.
    #[error("channel template {template:?} {problem}")]
    Template {
        /// The template (`Event::CHANNEL`).
        template: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The characters that names, channels and keys must not contain besides whitespace: Redis's
/// glob characters and its escape.
const GLOB_CHARS: &str = "*?[]\\";

/// The rule, for messages.
const RULE: &str =
    "names, channels and keys must be free of whitespace and of the glob characters * ? [ ] \\";

/// The one rule for the characters of names, channels and keys; `None` when `text` follows it.
/// `eventbus-derive` states the same rule (`rules.rs`); a shared table of names tests both.
fn reserved_char(text: &str) -> Option<String> {
    let c = text
        .chars()
        .find(|&c| c.is_whitespace() || GLOB_CHARS.contains(c))?;
    Some(if c.is_whitespace() {
        format!("contains whitespace ({c:?}); {RULE}")
    } else if c == '\\' {
        format!("contains a backslash; {RULE}")
    } else {
        format!("contains the glob character {c:?}; {RULE}")
    })
}

/// What is wrong with a channel (or key), if anything: empty, or a reserved character.
pub(crate) fn channel_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("is empty".to_owned());
    }
    reserved_char(text)
}

/// What is wrong with an event name, if anything: the channel rule, and no braces, as the
/// default channel `events:<name>` is built from it.
pub(crate) fn event_name_problem(name: &str) -> Option<String> {
    channel_problem(name).or_else(|| {
        name.contains(['{', '}']).then(|| {
            "contains a brace; an event name must be free of braces, as the default channel `events:<name>` is built from it".to_owned()
        })
    })
}

/// Checks a channel by the channel rule; the error names `what` and `value`.
pub(crate) fn check_name(what: &str, value: &str) -> Result<(), String> {
    match channel_problem(value) {
        None => Ok(()),
        Some(problem) => Err(format!("{what} {value:?} {problem}")),
    }
}

/// Fills the `{field}` placeholders of `template` with `keys`, in order, checking each key by
/// the key rule. The derive's `try_channel` and [`Topic::try_keyed`](crate::Topic::try_keyed) both come here.
#[doc(hidden)]
pub fn fill_channel(template: &str, keys: &[&dyn fmt::Display]) -> Result<String, ChannelError> {
    let mut filling = Filling::new(template);
    let mut rest = template;
    let mut keys = keys.iter();
    let mut given = 0;
    loop {
        let Segment { text, placeholder } =
            split_segment(rest).map_err(|p| filling.template_error(p.to_owned()))?;
        filling.push_text(text, placeholder.is_some())?;
        let Some((field, after)) = placeholder else {
            break;
        };
        if given > 0 && text.is_empty() {
            return Err(filling.template_error(
                "has placeholders side by side, so different keys could make the same channel"
                    .to_owned(),
            ));
        }
        let key = keys.next().ok_or_else(|| {
            filling.template_error(format!(
                "has more placeholders than the {} key(s) given",
                given
            ))
        })?;
        given += 1;
        filling.push_key(field, *key);
        rest = after;
    }
    if keys.next().is_some() {
        return Err(filling.template_error(format!(
            "has {given} placeholder(s) but {} key(s) were given",
            given + 1 + keys.count()
        )));
    }
    filling.finish()
}

/// A channel being filled in from its template, text and keys in turn.
struct Filling<'t> {
    template: &'t str,
    out: String,
    /// The key written last, checked once the text after it is known: (field, start in `out`).
    pending: Option<(&'t str, usize)>,
    /// The first key that breaks the key rule: (field, start and end in `out`, problem).
    bad_key: Option<(&'t str, usize, usize, String)>,
}

impl<'t> Filling<'t> {
    fn new(template: &'t str) -> Self {
        Filling {
            template,
            out: String::with_capacity(template.len() + 16),
            pending: None,
            bad_key: None,
        }
    }

    fn template_error(&self, problem: String) -> ChannelError {
        ChannelError::Template {
            template: self.template.to_owned(),
            problem,
        }
    }

    /// Appends the fixed `text` of the template, then checks the key before it, now that the
    /// text after that key is known; `more` says whether another placeholder follows `text`.
    fn push_text(&mut self, text: &str, more: bool) -> Result<(), ChannelError> {
        if let Some(problem) = reserved_char(text) {
            return Err(self.template_error(problem));
        }
        let out = &mut self.out;
        out.push_str(text);
        if let Some((field, start)) = self.pending.take() {
            let next = more.then_some(text);
            if let Some(problem) = key_problem(&out[start..], out.len() - start - text.len(), next)
            {
                self.bad_key
                    .get_or_insert((field, start, out.len() - text.len(), problem));
            }
        }
        Ok(())
    }

    /// Appends the key filling the placeholder `field`; it is checked by the next `push_text`.
    fn push_key(&mut self, field: &'t str, key: &dyn fmt::Display) {
        let start = self.out.len();
        if fmt::write(&mut self.out, format_args!("{key}")).is_err() {
            self.bad_key.get_or_insert((
                field,
                start,
                self.out.len(),
                "could not be formatted".to_owned(),
            ));
        }
        self.pending = Some((field, start));
    }

    /// The channel, or the error of its first bad key.
    fn finish(self) -> Result<String, ChannelError> {
        match self.bad_key {
            None => Ok(self.out),
            Some((field, start, end, problem)) => Err(ChannelError::Key {
                field: field.to_owned(),
                value: self.out[start..end].to_owned(),
                problem,
                channel: self.out,
            }),
        }
    }
}

/// The text of a template up to its next placeholder, and that placeholder.
struct Segment<'a> {
    text: &'a str,
    /// The placeholder's name and the template after it.
    placeholder: Option<(&'a str, &'a str)>,
}

/// Splits off the text up to the next placeholder, and that placeholder.
fn split_segment(rest: &str) -> Result<Segment<'_>, &'static str> {
    let Some(open) = rest.find(['{', '}']) else {
        return Ok(Segment {
            text: rest,
            placeholder: None,
        });
    };
    if rest[open..].starts_with('}') {
        return Err("has a `}` that closes no placeholder");
    }
    let inner = &rest[open + 1..];
    let close = inner
        .find(['{', '}'])
        .ok_or("has a `{` that is never closed")?;
    if inner[close..].starts_with('{') || close == 0 {
        return Err("has a malformed placeholder");
    }
    Ok(Segment {
        text: &rest[..open],
        placeholder: Some((&inner[..close], &inner[close + 1..])),
    })
}

/// What is wrong with a key, if anything. `filled` is the key followed by the text after it, the
/// key being its first `key_len` bytes; `next` is that text when another placeholder follows it,
/// which must then first appear right after the key, or the channel would not tell its keys
/// apart (`a:{x}:{y}` with `x = "1:2"`, `y = "3"` and with `x = "1"`, `y = "2:3"`).
fn key_problem(filled: &str, key_len: usize, next: Option<&str>) -> Option<String> {
    let key = &filled[..key_len];
    if let Some(problem) = channel_problem(key) {
        return Some(problem);
    }
    let separator = next?;
    (filled.find(separator) != Some(key_len)).then(|| {
        format!(
            "contains {separator:?}, the text that separates it from the next key, so different keys could make the same channel"
        )
    })
}

/// A field that can fill a channel placeholder: one with a `Display` value.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot fill a channel placeholder: it does not implement `Display`",
    label = "used in the `#[event(channel = \"...\")]` template",
    note = "a keyed channel is filled from its fields' `Display` values: implement `std::fmt::Display` for `{Self}`, or use a field that has it"
)]
pub trait ChannelKey {
    /// The value to write into the channel.
    fn as_display(&self) -> &dyn fmt::Display;
}

impl<T: fmt::Display> ChannelKey for T {
    fn as_display(&self) -> &dyn fmt::Display {
        self
    }
}

/// A key for [`fill_channel`], spanned by the derive on its field so that a field that is not
/// `Display` is reported there.
#[doc(hidden)]
pub fn key<T: ChannelKey>(value: &T) -> &dyn fmt::Display {
    value.as_display()
}

/// The channel of a keyed event without the key rule, for [`Event::channel`] of derived events.
#[doc(hidden)]
pub fn unchecked_channel(
    checked: Result<Cow<'static, str>, ChannelError>,
    template: &'static str,
) -> Cow<'static, str> {
    match checked {
        Ok(channel) => channel,
        Err(ChannelError::Key { channel, .. }) => Cow::Owned(channel),
        Err(_) => Cow::Borrowed(template),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_in_order() {
        assert_eq!(fill_channel("user:{id}:n", &[&42]).unwrap(), "user:42:n");
        assert_eq!(fill_channel("a:{x}:{y}", &[&"p", &7]).unwrap(), "a:p:7");
        assert_eq!(fill_channel("plain", &[]).unwrap(), "plain");
        assert_eq!(fill_channel("{id}", &[&"x"]).unwrap(), "x");
    }

    #[test]
    fn wrong_number_of_keys() {
        let err = fill_channel("user:{id}", &[&1, &2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel template \"user:{id}\" has 1 placeholder(s) but 2 key(s) were given"
        );
        let err = fill_channel("a:{x}:{y}", &[&1]).unwrap_err();
        assert!(
            err.to_string()
                .contains("more placeholders than the 1 key(s) given")
        );
    }

    #[test]
    fn malformed_templates() {
        for (template, problem) in [
            ("a:{x}{y}", "side by side"),
            ("a:{x", "never closed"),
            ("a:x}", "closes no placeholder"),
            ("a:{}", "malformed placeholder"),
            ("a b:{x}", "whitespace"),
        ] {
            let err = fill_channel(template, &[&1, &2]).unwrap_err();
            assert!(
                matches!(&err, ChannelError::Template { problem: p, .. } if p.contains(problem)),
                "{template}: {err}"
            );
        }
    }

    fn key_error(template: &str, keys: &[&dyn fmt::Display]) -> (String, String, String) {
        match fill_channel(template, keys) {
            Err(ChannelError::Key {
                field,
                value,
                problem,
                ..
            }) => (field, value, problem),
            other => panic!("{template}: expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn keys_follow_the_channel_rule() {
        for bad in ["", "a b", "a\tb", "*", "a?", "[a]", "a\\b", "a\u{a0}b"] {
            let (field, value, problem) = key_error("user:{user_id}:n", &[&bad]);
            assert_eq!((field.as_str(), value.as_str()), ("user_id", bad));
            assert!(
                problem.contains("empty") || problem.contains("contains"),
                "{problem}"
            );
        }
        let err = fill_channel("user:{user_id}:n", &[&"a b"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel key `user_id` is \"a b\", which contains whitespace (' '); names, channels and keys must be free of whitespace and of the glob characters * ? [ ] \\"
        );
        assert!(matches!(err, ChannelError::Key { channel, .. } if channel == "user:a b:n"));
    }

    #[test]
    fn a_key_may_not_hold_the_text_that_separates_it_from_the_next() {
        // Without the rule ("1:2", "3") and ("1", "2:3") would share `a:1:2:3`.
        let (field, _, problem) = key_error("a:{x}:{y}", &[&"1:2", &"3"]);
        assert_eq!(field, "x");
        assert!(
            problem.contains("separates it from the next key"),
            "{problem}"
        );
        assert_eq!(
            fill_channel("a:{x}:{y}", &[&"1", &"2:3"]).unwrap(),
            "a:1:2:3"
        );
        // A key that ends with the start of a longer separator is as ambiguous.
        let (field, _, _) = key_error("a:{x}:b:{y}", &[&"1:b", &"3"]);
        assert_eq!(field, "x");
        assert_eq!(
            fill_channel("a:{x}:b:{y}", &[&"1", &"b:3"]).unwrap(),
            "a:1:b:b:3"
        );
        // The last key is followed by fixed text only, so it may hold anything else.
        assert_eq!(fill_channel("u:{id}:n", &[&"a:n"]).unwrap(), "u:a:n:n");
    }

    #[test]
    fn the_first_bad_key_is_named_and_the_whole_channel_kept() {
        let err = fill_channel("a:{x}:{y}", &[&"ok", &"*"]).unwrap_err();
        assert!(
            matches!(&err, ChannelError::Key { field, channel, .. } if field == "y" && channel == "a:ok:*"),
            "{err:?}"
        );
        assert_eq!(unchecked_channel(Err(err), "a:{x}:{y}"), "a:ok:*");
    }

    #[test]
    fn channels_are_checked() {
        assert!(check_name("channel", "events:user_created").is_ok());
        assert_eq!(
            check_name("channel", "").unwrap_err(),
            "channel \"\" is empty"
        );
        assert!(
            check_name("channel", "a b")
                .unwrap_err()
                .contains("whitespace")
        );
        assert!(
            check_name("channel", "events:*")
                .unwrap_err()
                .contains("'*'")
        );
        assert!(
            check_name("channel", "a\\b")
                .unwrap_err()
                .contains("backslash")
        );
        assert!(check_name("channel", "{tenant}:x").is_ok());
    }

    /// The rule stated once in `eventbus-derive/src/rules.rs` and once here, run over one table.
    #[test]
    fn names_and_channels_agree_with_the_derive() {
        const NAMES: &[(&str, bool, bool)] = include!("../../eventbus-derive/src/rules_table.in");
        for &(text, name_ok, channel_ok) in NAMES {
            assert_eq!(event_name_problem(text).is_none(), name_ok, "name {text:?}");
            assert_eq!(
                channel_problem(text).is_none(),
                channel_ok,
                "channel {text:?}"
            );
        }
    }
}
