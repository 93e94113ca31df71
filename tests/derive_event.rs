//! `#[derive(Event)]`: what the generated impls hold and how they behave.

use std::borrow::Cow;

use eventbus::{ChannelError, Event, Topic};
use serde::{Deserialize, Serialize};

// ---- default names ------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, Event)]
struct UserCreated {
    user_id: u64,
    name: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
struct HTTPRequestFailed {
    status: u16,
}

#[derive(Debug, Serialize, Deserialize, Event)]
struct OrderV2Placed {
    order_id: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
struct UserIDChanged {
    old: u64,
    new: u64,
}

#[derive(Debug, Serialize, Deserialize, Event)]
struct S3ObjectUploaded {
    key: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
struct Ping;

#[test]
fn default_type_is_the_snake_case_name() {
    assert_eq!(UserCreated::TYPE, "user_created");
    assert_eq!(HTTPRequestFailed::TYPE, "http_request_failed");
    assert_eq!(OrderV2Placed::TYPE, "order_v2_placed");
    assert_eq!(UserIDChanged::TYPE, "user_id_changed");
    assert_eq!(S3ObjectUploaded::TYPE, "s3_object_uploaded");
    assert_eq!(Ping::TYPE, "ping");
}

#[test]
fn default_channel_is_events_colon_type() {
    assert_eq!(UserCreated::CHANNEL, "events:user_created");
    assert_eq!(HTTPRequestFailed::CHANNEL, "events:http_request_failed");
    assert_eq!(OrderV2Placed::CHANNEL, "events:order_v2_placed");
    assert_eq!(Ping::CHANNEL, "events:ping");
}

#[test]
fn defaults_version_one_no_pattern_fixed_channel() {
    assert_eq!(UserCreated::VERSION, 1);
    assert_eq!(UserCreated::PATTERN, None);
    let event = UserCreated {
        user_id: 1,
        name: "Ada".into(),
    };
    assert_eq!(event.channel(), Cow::Borrowed("events:user_created"));
    assert!(matches!(event.channel(), Cow::Borrowed(_)));
    assert_eq!(
        Topic::of::<UserCreated>(),
        Topic::channel("events:user_created")
    );
}

// ---- overrides ----------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(name = "order_placed", version = 2)]
struct OrderPlaced {
    order_id: String,
    total: f64,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(name = "invoice.paid")]
#[event(version = 7)]
#[event(channel = "billing")]
struct InvoicePaid {
    invoice: u64,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "audit:logins")]
struct LoginSucceeded {
    user_id: u64,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(version = 4294967295, name = "max_version")]
struct MaxVersion;

#[test]
fn name_override_also_moves_the_default_channel() {
    assert_eq!(OrderPlaced::TYPE, "order_placed");
    assert_eq!(OrderPlaced::VERSION, 2);
    assert_eq!(OrderPlaced::CHANNEL, "events:order_placed");
}

#[test]
fn keys_spread_over_several_attributes() {
    assert_eq!(InvoicePaid::TYPE, "invoice.paid");
    assert_eq!(InvoicePaid::VERSION, 7);
    assert_eq!(InvoicePaid::CHANNEL, "billing");
    assert_eq!(InvoicePaid { invoice: 1 }.channel(), "billing");
}

#[test]
fn channel_override_keeps_the_default_name() {
    assert_eq!(LoginSucceeded::TYPE, "login_succeeded");
    assert_eq!(LoginSucceeded::CHANNEL, "audit:logins");
    assert_eq!(LoginSucceeded::PATTERN, None);
}

#[test]
fn version_may_be_u32_max_and_trailing_comma_is_accepted() {
    assert_eq!(MaxVersion::VERSION, u32::MAX);
    assert_eq!(MaxVersion::TYPE, "max_version");
}

// ---- keyed channels -----------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "user:{user_id}:notifications")]
struct Notification {
    user_id: u64,
    text: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "tenant:{tenant}:order:{order_id}")]
struct OrderUpdated {
    order_id: String,
    status: String,
    tenant: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "room:{0}:{2}")]
struct ChatMessage(String, String, u32);

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "kind:{type}")]
struct RawField {
    r#type: String,
}

#[test]
fn keyed_channel_is_filled_from_the_fields() {
    let event = Notification {
        user_id: 42,
        text: "hi".into(),
    };
    assert_eq!(event.channel(), "user:42:notifications");
    assert!(matches!(event.channel(), Cow::Owned(_)));
    assert_eq!(Notification::CHANNEL, "user:{user_id}:notifications");
    assert_eq!(Notification::PATTERN, Some("user:*:notifications"));
    assert_eq!(Notification::TYPE, "notification");
}

#[test]
fn keyed_channel_follows_placeholder_order_not_field_order() {
    let event = OrderUpdated {
        order_id: "o-17".into(),
        status: "shipped".into(),
        tenant: "acme".into(),
    };
    assert_eq!(event.channel(), "tenant:acme:order:o-17");
    assert_eq!(OrderUpdated::PATTERN, Some("tenant:*:order:*"));
}

#[test]
fn tuple_struct_placeholders_are_indices() {
    let event = ChatMessage("general".into(), "hello".into(), 3);
    assert_eq!(event.channel(), "room:general:3");
    assert_eq!(ChatMessage::CHANNEL, "room:{0}:{2}");
    assert_eq!(ChatMessage::PATTERN, Some("room:*:*"));
    assert_eq!(ChatMessage::TYPE, "chat_message");
}

#[test]
fn raw_identifier_fields_are_named_without_r_hash() {
    let event = RawField { r#type: "x".into() };
    assert_eq!(event.channel(), "kind:x");
}

#[test]
fn keyed_channel_agrees_with_topic_helpers() {
    let event = Notification {
        user_id: 7,
        text: String::new(),
    };
    assert_eq!(
        Topic::keyed::<Notification>(&[&7]),
        Topic::channel(event.channel().into_owned())
    );
    assert_eq!(
        Topic::of::<Notification>(),
        Topic::pattern("user:*:notifications")
    );
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "user:{user_id}:notifications")]
struct Inbox {
    user_id: String,
}

#[derive(Debug, Serialize, Deserialize, Event)]
#[event(channel = "multi:{a}:{b}")]
struct TwoKeys {
    a: String,
    b: String,
}

fn inbox(user_id: &str) -> Inbox {
    Inbox {
        user_id: user_id.into(),
    }
}

#[test]
fn try_channel_checks_keys_and_names_the_field() {
    assert_eq!(inbox("42").try_channel().unwrap(), "user:42:notifications");
    for bad in ["", "a b", "a\tb", "*", "user?", "[1]", "a\\b"] {
        let err = inbox(bad).try_channel().unwrap_err();
        let ChannelError::Key { field, value, .. } = &err else {
            panic!("{bad:?}: {err:?}");
        };
        assert_eq!((field.as_str(), value.as_str()), ("user_id", bad));
        assert!(
            err.to_string().starts_with("channel key `user_id` is"),
            "{err}"
        );
        // `channel()` stays unchecked: what the keys make, as before.
        assert_eq!(inbox(bad).channel(), format!("user:{bad}:notifications"));
    }
    assert_eq!(
        inbox("a b").try_channel().unwrap_err().to_string(),
        "channel key `user_id` is \"a b\", which contains whitespace (' '); names, channels and keys must be free of whitespace and of the glob characters * ? [ ] \\"
    );
}

#[test]
fn fixed_channels_need_no_check() {
    assert_eq!(
        UserCreated {
            user_id: 1,
            name: "a b".into()
        }
        .try_channel()
        .unwrap(),
        "events:user_created"
    );
    assert!(matches!(
        Ping.try_channel(),
        Ok(Cow::Borrowed("events:ping"))
    ));
}

#[test]
fn different_keys_never_share_a_channel() {
    let two = |a: &str, b: &str| {
        TwoKeys {
            a: a.into(),
            b: b.into(),
        }
        .try_channel()
    };
    assert_eq!(two("1", "2:3").unwrap(), "multi:1:2:3");
    let err = two("1:2", "3").unwrap_err();
    assert!(
        matches!(&err, ChannelError::Key { field, .. } if field == "a"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("separates it from the next key"),
        "{err}"
    );
}

/// Publishing and subscribing to one key accept and refuse the same keys.
#[test]
fn topic_keys_follow_the_same_rule_as_publishing() {
    for key in ["42", "ada@example.com", "a:b", "", "a b", "*", "a\\b"] {
        let published = inbox(key).try_channel();
        let subscribed = Topic::try_keyed::<Inbox>(&[&key]);
        match (&published, &subscribed) {
            (Ok(channel), Ok(topic)) => assert_eq!(topic, &Topic::channel(channel.as_ref())),
            (Err(p), Err(s)) => assert_eq!(p, s),
            _ => panic!("{key:?}: publish {published:?}, subscribe {subscribed:?}"),
        }
    }
}

#[test]
#[should_panic(expected = "channel key `user_id` is \"*\", which contains the glob character '*'")]
fn topic_keyed_panics_on_a_bad_key() {
    let _ = Topic::keyed::<Inbox>(&[&"*"]);
}

#[test]
fn topic_keyed_counts_its_keys() {
    let err = Topic::try_keyed::<TwoKeys>(&[&"1"]).unwrap_err();
    assert!(matches!(err, ChannelError::Template { .. }), "{err:?}");
    let err = Topic::try_keyed::<Inbox>(&[&"1", &"2"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel template \"user:{user_id}:notifications\" has 1 placeholder(s) but 2 key(s) were given"
    );
}

/// A hand-written event's channel is checked by the same rule when it is published.
#[derive(Debug, Serialize, Deserialize)]
struct HandWritten;

impl Event for HandWritten {
    const TYPE: &'static str = "hand written";
    const CHANNEL: &'static str = "hand written";
}

#[test]
fn hand_written_channels_are_checked_on_publish() {
    let err = HandWritten.try_channel().unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel \"hand written\" contains whitespace (' '); names, channels and keys must be free of whitespace and of the glob characters * ? [ ] \\"
    );
}

// ---- tuple and unit structs, enums --------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
struct CartTotal(u64, String);

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PaymentEvent {
    Authorized { amount: u64 },
    Declined { reason: String },
    Refunded,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "shape", channel = "geometry")]
enum Shape {
    Circle(f64),
    Square { side: f64 },
    Empty,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
enum Never {}

#[test]
fn tuple_and_unit_structs() {
    assert_eq!(CartTotal::TYPE, "cart_total");
    assert_eq!(CartTotal::CHANNEL, "events:cart_total");
    let json = serde_json::to_string(&CartTotal(3, "EUR".into())).unwrap();
    assert_eq!(json, r#"[3,"EUR"]"#);
    assert_eq!(
        serde_json::from_str::<CartTotal>(&json).unwrap(),
        CartTotal(3, "EUR".into())
    );
    assert_eq!(Ping.channel(), "events:ping");
    assert_eq!(serde_json::to_string(&Ping).unwrap(), "null");
}

#[test]
fn enums_keep_their_serde_representation() {
    assert_eq!(PaymentEvent::TYPE, "payment_event");
    assert_eq!(PaymentEvent::CHANNEL, "events:payment_event");
    let values = [
        PaymentEvent::Authorized { amount: 500 },
        PaymentEvent::Declined {
            reason: "card expired".into(),
        },
        PaymentEvent::Refunded,
    ];
    let expected = [
        r#"{"kind":"authorized","amount":500}"#,
        r#"{"kind":"declined","reason":"card expired"}"#,
        r#"{"kind":"refunded"}"#,
    ];
    for (value, expected) in values.iter().zip(expected) {
        let json = serde_json::to_string(value).unwrap();
        assert_eq!(json, expected);
        assert_eq!(&serde_json::from_str::<PaymentEvent>(&json).unwrap(), value);
        assert_eq!(value.channel(), "events:payment_event");
    }
}

#[test]
fn enums_with_overrides_round_trip() {
    assert_eq!(Shape::TYPE, "shape");
    assert_eq!(Shape::CHANNEL, "geometry");
    for value in [
        Shape::Circle(1.5),
        Shape::Square { side: 2.0 },
        Shape::Empty,
    ] {
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<Shape>(&json).unwrap(), value);
        assert_eq!(value.channel(), "geometry");
    }
    assert_eq!(Never::TYPE, "never");
}

// ---- `crate = "..."` and hygiene ----------------------------------------------------------

mod reexport {
    pub(crate) use ::eventbus;
}

mod through_reexport {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, crate::reexport::eventbus::Event)]
    #[event(crate = "crate::reexport::eventbus")]
    pub(crate) struct Shipped {
        pub(crate) parcel: u64,
    }

    #[derive(Debug, Serialize, Deserialize, crate::reexport::eventbus::Event)]
    #[event(crate = "crate::reexport::eventbus", channel = "parcel:{parcel}")]
    pub(crate) struct Tracked {
        pub(crate) parcel: u64,
    }
}

mod relative_reexport {
    use serde::{Deserialize, Serialize};

    mod reexport {
        pub(super) use ::eventbus;
    }

    #[derive(Debug, Serialize, Deserialize, reexport::eventbus::Event)]
    #[event(crate = "reexport::eventbus")]
    pub(crate) struct Delivered;
}

#[test]
fn crate_path_points_at_a_reexport() {
    assert_eq!(through_reexport::Shipped::TYPE, "shipped");
    let tracked = through_reexport::Tracked { parcel: 9 };
    assert_eq!(tracked.channel(), "parcel:9");
    assert_eq!(through_reexport::Tracked::PATTERN, Some("parcel:*"));
    assert_eq!(relative_reexport::Delivered::CHANNEL, "events:delivered");
}

/// Names the generated code must not pick up from the caller's scope.
mod shadowing {
    #![allow(dead_code, unused_macros)]
    use serde::{Deserialize, Serialize};

    struct Cow;
    struct Option;
    struct Result;
    struct Some;
    macro_rules! format {
        ($($t:tt)*) => {
            compile_error!("the derive must not use the caller's `format!`")
        };
    }
    mod eventbus {}

    #[derive(Debug, Serialize, Deserialize, ::eventbus::Event)]
    #[event(channel = "shadow:{id}")]
    pub(crate) struct Shadowed {
        pub(crate) id: u32,
    }
}

/// No prelude: the generated code must name everything by absolute path.
mod no_prelude {
    #![no_implicit_prelude]

    #[derive(::serde::Serialize, ::serde::Deserialize, ::eventbus::Event)]
    #[event(channel = "bare:{0}")]
    pub(crate) struct Bare(pub(crate) u8);
}

#[test]
fn generated_code_uses_absolute_paths() {
    assert_eq!(no_prelude::Bare(1).channel(), "bare:1");
    let event = shadowing::Shadowed { id: 5 };
    assert_eq!(event.channel(), "shadow:5");
    assert_eq!(shadowing::Shadowed::PATTERN, Some("shadow:*"));
}

/// The derive also works when invoked from a `macro_rules!` macro, whose fragments reach it
/// wrapped in invisible groups.
macro_rules! event_with_version {
    ($name:ident, $version:literal, $channel:expr) => {
        #[derive(Debug, Serialize, Deserialize, Event)]
        #[event(version = $version, channel = $channel)]
        struct $name {
            id: u64,
        }
    };
}

event_with_version!(FromMacro, 3, "macro:{id}");

#[test]
fn attributes_built_by_macro_rules() {
    assert_eq!(FromMacro::VERSION, 3);
    assert_eq!(FromMacro { id: 8 }.channel(), "macro:8");
}
