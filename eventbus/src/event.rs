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
///
/// # Keyed channels
///
/// A channel template with `{field}` placeholders (`user:{user_id}:notifications`) publishes each
/// value on its own channel (`user:42:notifications`), filled from the fields' `Display` values.
/// [`PATTERN`](Event::PATTERN) then holds the glob pattern that matches every key
/// (`user:*:notifications`); handlers subscribe to it unless they choose keys.
///
/// # Implementing it by hand
///
/// Names and channels must be non-empty and free of whitespace and of the Redis glob
/// characters `* ? [ ]`; the derive checks this at compile time, a manual implementation is
/// checked when a handler is registered or an event published.
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

    /// For keyed events, the glob pattern that matches the channel of every key
    /// (`"user:*:notifications"`); `None` for events with one fixed channel.
    const PATTERN: Option<&'static str> = None;

    /// The channel this value is published on.
    ///
    /// For events with a fixed channel this is [`CHANNEL`](Event::CHANNEL); keyed events fill the
    /// template from the value's fields.
    fn channel(&self) -> Cow<'static, str> {
        Cow::Borrowed(Self::CHANNEL)
    }
}

/// Where a handler listens: one channel, or every channel matching a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// An exact channel name (`SUBSCRIBE`).
    Channel(String),
    /// A glob pattern over channel names (`PSUBSCRIBE`), such as `events:*`.
    Pattern(String),
}

impl Topic {
    /// An exact channel.
    pub fn channel(name: impl Into<String>) -> Self {
        Topic::Channel(name.into())
    }

    /// A glob pattern (`*`, `?`, `[...]`, `\` escapes, as Redis reads them).
    pub fn pattern(glob: impl Into<String>) -> Self {
        Topic::Pattern(glob.into())
    }

    /// The topic that receives every value of `E`: its channel, or for keyed events its pattern.
    pub fn of<E: Event>() -> Self {
        match E::PATTERN {
            Some(p) => Topic::Pattern(p.to_owned()),
            None => Topic::Channel(E::CHANNEL.to_owned()),
        }
    }

    /// The channel of a keyed event `E` for chosen key values, in placeholder order.
    ///
    /// ```
    /// use eventbus::{Event, Topic};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize, Event)]
    /// #[event(channel = "user:{user_id}:notifications")]
    /// struct Notification { user_id: u64, text: String }
    ///
    /// assert_eq!(Topic::keyed::<Notification>(&[&42]), Topic::channel("user:42:notifications"));
    /// ```
    ///
    /// # Panics
    ///
    /// When the number of keys differs from the number of placeholders in `E::CHANNEL`.
    #[track_caller]
    pub fn keyed<E: Event>(keys: &[&dyn fmt::Display]) -> Self {
        Topic::Channel(fill_template(E::CHANNEL, keys))
    }

    /// The channel name or pattern text.
    pub fn as_str(&self) -> &str {
        match self {
            Topic::Channel(s) | Topic::Pattern(s) => s,
        }
    }

    /// Whether this is a pattern.
    pub fn is_pattern(&self) -> bool {
        matches!(self, Topic::Pattern(_))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Channel(s) => write!(f, "channel `{s}`"),
            Topic::Pattern(s) => write!(f, "pattern `{s}`"),
        }
    }
}

/// Fills the `{field}` placeholders of a channel template with `keys`, in order.
#[track_caller]
fn fill_template(template: &str, keys: &[&dyn fmt::Display]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    let mut used = 0;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let key = keys.get(used).unwrap_or_else(|| {
            panic!(
                "channel template `{template}` has more placeholders than the {} key(s) given",
                keys.len()
            )
        });
        out.push_str(&key.to_string());
        used += 1;
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    assert!(
        used == keys.len(),
        "channel template `{template}` has {used} placeholder(s) but {} key(s) were given",
        keys.len()
    );
    out
}

/// Checks a name or channel: non-empty, no whitespace, no glob characters.
pub(crate) fn check_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '*' | '?' | '[' | ']'))
    {
        return Err(format!(
            "{what} `{value}` contains {c:?}; names and channels must be free of whitespace and of the glob characters * ? [ ]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_in_order() {
        assert_eq!(fill_template("user:{id}:n", &[&42]), "user:42:n");
        assert_eq!(fill_template("a:{x}:{y}", &[&"p", &7]), "a:p:7");
        assert_eq!(fill_template("plain", &[]), "plain");
    }

    #[test]
    #[should_panic(expected = "has 1 placeholder(s) but 2 key(s)")]
    fn too_many_keys_panics() {
        fill_template("user:{id}", &[&1, &2]);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("event type", "user_created").is_ok());
        assert!(check_name("event type", "").unwrap_err().contains("empty"));
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
    }
}
