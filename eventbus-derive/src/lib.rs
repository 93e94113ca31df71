//! `#[derive(Event)]` and `#[handler]` for the [`eventbus`](https://docs.rs/eventbus) crate.
//!
//! Use them through `eventbus::Event` and `eventbus::handler` (the `derive` feature, on by
//! default) rather than directly.
//! The derive is built in three stages: `attr` and `ast` parse the input, keeping its tokens
//! for spans; `check` validates it and resolves names and channels; `expand` generates the
//! impl. Every mistake is collected in a `ctxt::Ctxt` and reported at once, next to a fallback
//! impl so that the type's other uses add no follow-on errors.

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;
mod handler;
mod rules;
mod template;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `eventbus::Event` for a struct or enum.
///
/// ```ignore
/// #[derive(Serialize, Deserialize, Event)]
/// #[event(name = "order_placed", version = 2)]
/// struct OrderPlaced { order_id: String, total: f64 }
///
/// #[derive(Serialize, Deserialize, Event)]
/// #[event(channel = "user:{user_id}:notifications")]
/// struct Notification { user_id: u64, text: String }
/// ```
///
/// | attribute | value | default |
/// |---|---|---|
/// | `#[event(name = "...")]` | the event type, sent as the envelope's `type` | the type's name in snake_case (`HTTPRequestFailed` → `http_request_failed`) |
/// | `#[event(version = N)]` | the schema version, an integer from 1 to `u32::MAX` | `1` |
/// | `#[event(channel = "...")]` | the channel; `{field}` (or `{0}` in a tuple struct) placeholders make a keyed channel | `events:<name>` |
/// | `#[event(crate = "...")]` | the path of the eventbus crate, for re-exports | `::eventbus` |
/// | `#[event(durable)]` | a flag, no value: durable delivery, appended to the Redis stream named by the channel and read by one consumer group per handler, at least once; not with a keyed channel | broadcast over pub/sub, at most once |
///
/// Keys may be combined in one attribute or spread over several; each may be given once.
/// Names and channels must be non-empty and free of whitespace and of the Redis glob
/// characters `* ? [ ] \`; names also refuse braces, and in a channel braces are only allowed
/// as placeholders (the rule is stated in `rules.rs`, the same as the runtime's).
///
/// A keyed channel (`user:{user_id}:notifications`) makes `try_channel()` fill the template from
/// the fields' `Display` values and check each key by the runtime's key rule (`channel()` fills
/// it unchecked), sets `PATTERN` to the glob matching every key (`user:*:notifications`) and
/// keeps the template in `CHANNEL`. Placeholders side by side (`{a}{b}`) are an error, as
/// different keys would make the same channel. Keyed channels need a struct with fields; on
/// enums and unit structs they are an error.
///
/// Generic types and types with lifetimes are rejected: every instantiation of a generic type
/// would share one name and channel, and events must own their data. Unions are rejected as
/// serde cannot represent them.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}

/// Checks one async fn as an eventbus handler, with a clear error on the argument or return
/// type that is wrong; the fn itself is left as it is.
///
/// Registering a fn that is not a valid handler gives one general error ("is not an eventbus
/// handler"), pointing at the registration. With this attribute the fn's own argument or
/// return type is pointed at, with a hint for that mistake: a first argument that is not an
/// event (or is borrowed, `&E`), a `State<S>` whose `S` is not `Clone`, an extra argument that
/// is neither `State<S>` nor `EventBus`, a return type other than `()` and `Result<(), E>`,
/// and a future that is not `Send` (a value such as an `Rc` held across an `.await`). It adds
/// no cost at run time: the checks are compiled, never run.
///
/// It applies to free `async fn`s without generic parameters. `crate = "path::to::eventbus"`
/// names the crate when it is re-exported under another path.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}
