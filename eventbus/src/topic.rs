//! Topics: the channel or pattern a handler listens on.

use std::fmt;

use crate::event::{ChannelError, Event, fill_channel};

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
    /// When a key breaks the key rule (see [`Event`](Event#names-channels-and-keys)) or the
    /// number of keys differs from the number of placeholders in `E::CHANNEL`. For keys that
    /// come from outside the program, use [`try_keyed`](Topic::try_keyed).
    #[track_caller]
    pub fn keyed<E: Event>(keys: &[&dyn fmt::Display]) -> Self {
        Topic::try_keyed::<E>(keys).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The channel of a keyed event `E` for chosen key values, in placeholder order, or why
    /// these keys make no channel: the same check as publishing an event with these keys.
    ///
    /// ```
    /// use eventbus::{Event, Topic};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize, Event)]
    /// #[event(channel = "room:{room}")]
    /// struct ChatMessage { room: String, text: String }
    ///
    /// assert_eq!(Topic::try_keyed::<ChatMessage>(&[&"lobby"]), Ok(Topic::channel("room:lobby")));
    /// assert!(Topic::try_keyed::<ChatMessage>(&[&"*"]).is_err());
    /// ```
    pub fn try_keyed<E: Event>(keys: &[&dyn fmt::Display]) -> Result<Self, ChannelError> {
        fill_channel(E::CHANNEL, keys).map(Topic::Channel)
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
