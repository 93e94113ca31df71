//! Checks the parsed input and resolves what to generate.

use proc_macro2::Span;
use syn::{GenericParam, LitStr, Member};

use crate::ast::{Data, Field, Input, Style};
use crate::attr::edit_distance;
use crate::case::snake_case;
use crate::ctxt::Ctxt;
use crate::rules::{describe, name_reserved_char, reserved_char};
use crate::template::{Template, is_plain_key};

/// Everything the generated impl needs, all validated.
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) channel: Channel,
    pub(crate) durable: bool,
}

/// Where the event is published.
pub(crate) enum Channel {
    /// One channel for every value.
    Fixed(String),
    /// A channel per value, filled in from its fields.
    Keyed {
        /// The template, as written (`user:{user_id}:notifications`).
        template: String,
        /// The glob pattern matching every key (`user:*:notifications`).
        pattern: String,
        /// The fields filling the placeholders, in order, with the span of each field.
        args: Vec<(Member, Span)>,
    },
}

/// Why names are restricted, for messages.
const NAME_RULE: &str = "an event name must be free of whitespace, of the Redis glob characters * ? [ ] \\ and of braces, as it is also used in the default channel `events:<name>`";

/// Why fixed channels are restricted, for messages.
const CHANNEL_RULE: &str = "a channel must be free of whitespace and of the Redis glob characters * ? [ ] \\; for a channel per key, use a placeholder such as \"user:{user_id}\"";

/// Checks `input`, reporting every problem to `cx`. Returns `None` if anything was wrong.
pub(crate) fn check(cx: &Ctxt, input: &Input<'_>) -> Option<Spec> {
    let mut ok = check_shape(cx, input);

    let name = match &input.attrs.name {
        Some(lit) => {
            let name = lit.value();
            ok &= check_name(cx, lit, &name);
            name
        }
        None => snake_case(&input.ident.to_string()),
    };
    let version = input.attrs.version.map_or(1, |(version, _)| version);
    let channel = match &input.attrs.channel {
        Some(lit) => check_channel(cx, input, lit),
        None => Some(Channel::Fixed(format!("events:{name}"))),
    };
    if let (Some(span), Some(Channel::Keyed { .. })) = (input.attrs.durable, &channel) {
        cx.error_at(
            span,
            "a durable event cannot have a keyed channel: its channel is the Redis stream it is appended to, and consumer groups read one stream; use a fixed channel and put the key in the data",
        );
        ok = false;
    }
    match channel {
        Some(channel) if ok => Some(Spec {
            name,
            version,
            channel,
            durable: input.attrs.durable.is_some(),
        }),
        _ => None,
    }
}

/// Unions cannot be serialized; lifetimes and type parameters cannot be events.
fn check_shape(cx: &Ctxt, input: &Input<'_>) -> bool {
    let mut ok = true;
    if let Data::Union(span) = input.data {
        cx.error_at(
            span,
            "#[derive(Event)] does not support unions: an event is serialized with serde, which cannot tell which field of a union is set; use a struct or an enum",
        );
        ok = false;
    }
    let generics = input.generics;
    let mut lifetimes = false;
    for param in &generics.params {
        if let GenericParam::Lifetime(param) = param {
            lifetimes = true;
            cx.error_spanned_by(
                &param.lifetime,
                format!(
                    "an event cannot borrow: `{}` makes `{}` hold references, but events are sent to other tasks and services and must own their data (`Event: 'static`); use owned types such as `String` and `Vec<T>`",
                    param.lifetime, input.ident
                ),
            );
        }
    }
    if !lifetimes && !generics.params.is_empty() {
        // `Generics` prints as `<...>`, without the where clause.
        cx.error_spanned_by(
            generics,
            format!(
                "#[derive(Event)] does not support generic types: every instantiation of `{}` would share one event name and channel, so a handler could not tell them apart; derive `Event` on a concrete type, or implement `eventbus::Event` by hand with a distinct name for each instantiation",
                input.ident
            ),
        );
    }
    ok && generics.params.is_empty()
}

/// A name must be usable as an envelope `type` and in the default channel.
fn check_name(cx: &Ctxt, lit: &LitStr, name: &str) -> bool {
    if name.is_empty() {
        cx.error_spanned_by(
            lit,
            "the event name must not be empty; omit `name` to use the type's name in snake_case",
        );
        return false;
    }
    if let Some(c) = name_reserved_char(name) {
        cx.error_spanned_by(
            lit,
            format!(
                "the event name {name:?} contains {}; {NAME_RULE}",
                describe(c)
            ),
        );
        return false;
    }
    true
}

/// A `channel = "..."` value: a fixed channel, or a template keyed by the type's fields.
fn check_channel(cx: &Ctxt, input: &Input<'_>, lit: &LitStr) -> Option<Channel> {
    let channel = lit.value();
    if channel.is_empty() {
        cx.error_spanned_by(
            lit,
            "the channel must not be empty; omit `channel` to use `events:<name>`",
        );
        return None;
    }
    let template = match Template::parse(&channel) {
        Ok(template) => template,
        Err(err) => {
            cx.error_spanned_by(
                lit,
                format!(
                    "the channel {channel:?} {err}; braces are only allowed around a field name, as in \"user:{{user_id}}:notifications\""
                ),
            );
            return None;
        }
    };
    if template.is_keyed() {
        keyed_channel(cx, input, lit, channel, &template)
    } else {
        fixed_channel(cx, lit, channel)
    }
}

/// A channel without placeholders must follow the channel rule.
fn fixed_channel(cx: &Ctxt, lit: &LitStr, channel: String) -> Option<Channel> {
    if let Some(c) = reserved_char(&channel) {
        cx.error_spanned_by(
            lit,
            format!(
                "the channel {channel:?} contains {}; {CHANNEL_RULE}",
                describe(c)
            ),
        );
        return None;
    }
    Some(Channel::Fixed(channel))
}

/// A channel with placeholders: its text makes a sound pattern, and each placeholder names a
/// field of the struct.
fn keyed_channel(
    cx: &Ctxt,
    input: &Input<'_>,
    lit: &LitStr,
    channel: String,
    template: &Template,
) -> Option<Channel> {
    let mut ok = check_keyed_text(cx, lit, &channel, template);
    ok &= check_separated(cx, lit, &channel, template);
    ok &= check_has_text(cx, lit, &channel, template);
    let fields = key_fields(cx, input, lit, &channel)?;
    let args = placeholder_fields(cx, input, lit, fields, template);
    match args {
        Some(args) if ok => Some(Channel::Keyed {
            pattern: template.pattern(),
            template: channel,
            args,
        }),
        _ => None,
    }
}

/// Outside its placeholders, a keyed channel is its subscription pattern, so it follows the
/// channel rule.
fn check_keyed_text(cx: &Ctxt, lit: &LitStr, channel: &str, template: &Template) -> bool {
    let Some(c) = template.texts().find_map(reserved_char) else {
        return true;
    };
    cx.error_spanned_by(
        lit,
        format!("the channel {channel:?} contains {}; outside its `{{field}}` placeholders a keyed channel must be free of whitespace and of the Redis glob characters * ? [ ] \\, as that text is also its subscription pattern", describe(c)),
    );
    false
}

/// Placeholders side by side would let different keys make the same channel.
fn check_separated(cx: &Ctxt, lit: &LitStr, channel: &str, template: &Template) -> bool {
    let Some((a, b)) = template.adjacent_placeholders() else {
        return true;
    };
    cx.error_spanned_by(
        lit,
        format!("the channel {channel:?} has the placeholders `{{{a}}}{{{b}}}` side by side, so different keys would make the same channel (\"1\" and \"23\" as \"12\" and \"3\"); put fixed text between them, as in \"{{{a}}}:{{{b}}}\""),
    );
    false
}

/// A channel of placeholders only would have the pattern `*`, matching every channel.
fn check_has_text(cx: &Ctxt, lit: &LitStr, channel: &str, template: &Template) -> bool {
    if template.texts().next().is_some() {
        return true;
    }
    cx.error_spanned_by(
        lit,
        format!("the channel {channel:?} is only placeholders, so its pattern `*` would match every channel; add fixed text, as in \"user:{{user_id}}\""),
    );
    false
}

/// The fields a keyed channel is filled from: only a struct with fields has them.
fn key_fields<'i>(
    cx: &Ctxt,
    input: &'i Input<'_>,
    lit: &LitStr,
    channel: &str,
) -> Option<&'i [Field]> {
    match &input.data {
        Data::Struct(Style::Named | Style::Tuple, fields) => Some(fields),
        Data::Struct(Style::Unit, _) => {
            cx.error_spanned_by(
                lit,
                format!(
                    "the channel {channel:?} has placeholders, but `{}` is a unit struct with no fields to fill them from; use a fixed channel",
                    input.ident
                ),
            );
            None
        }
        Data::Enum => {
            cx.error_spanned_by(
                lit,
                format!(
                    "the channel {channel:?} has placeholders, but `{}` is an enum: keyed channels are filled from struct fields, which enum variants do not share; use a fixed channel, or a struct that holds the key and the enum",
                    input.ident
                ),
            );
            None
        }
        Data::Union(_) => None,
    }
}

/// The field filling each placeholder, in order, or `None` if one names no field.
fn placeholder_fields(
    cx: &Ctxt,
    input: &Input<'_>,
    lit: &LitStr,
    fields: &[Field],
    template: &Template,
) -> Option<Vec<(Member, Span)>> {
    let mut ok = true;
    let mut args = Vec::new();
    for key in template.placeholders() {
        match fields.iter().find(|f| f.key == key) {
            Some(field) => args.push((field.member.clone(), field.span)),
            None => {
                cx.error_spanned_by(lit, missing_field(input, fields, key));
                ok = false;
            }
        }
    }
    ok.then_some(args)
}

fn missing_field(input: &Input<'_>, fields: &[Field], key: &str) -> String {
    let ident = input.ident;
    let names: Vec<String> = fields.iter().map(|f| format!("`{}`", f.key)).collect();
    let available = match names.as_slice() {
        [] => format!("`{ident}` has no fields"),
        [one] => format!("its only field is {one}"),
        [init @ .., last] => format!("its fields are {} and {last}", init.join(", ")),
    };
    if !is_plain_key(key) {
        return format!(
            "channel placeholder `{{{key}}}` is not a field name: a placeholder holds a bare field name, or a tuple index such as `{{0}}`, with no spaces or format spec; {available}"
        );
    }
    let hint = fields
        .iter()
        .map(|f| (edit_distance(&f.key, key), &f.key))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| format!(" (did you mean `{{{name}}}`?)"))
        .unwrap_or_default();
    format!("channel placeholder `{{{key}}}` does not name a field of `{ident}`{hint}; {available}")
}
