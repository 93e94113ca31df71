//! Parsing `#[event(...)]` attributes.
//!
//! ```text
//! attribute := "#[event(" [ item { "," item } [ "," ] ] ")]"
//! item      := "name" "=" STRING
//!            | "version" "=" INTEGER        (1 ..= u32::MAX)
//!            | "channel" "=" STRING
//!            | "crate" "=" STRING           (a path, such as "::eventbus")
//!            | "durable"                    (a flag: the type travels on a Redis stream)
//! ```
//!
//! Each key may appear once across all of a type's `#[event]` attributes. Every mistake is
//! reported to the [`Ctxt`] and parsing carries on with the next item.

use proc_macro2::{Delimiter, Ident, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser as _};
use syn::{Attribute, Expr, ExprLit, Lit, LitInt, LitStr, Meta, MetaList, UnOp};

use crate::ctxt::Ctxt;

/// The keys `#[event(...)]` accepts.
pub(crate) const KEYS: [&str; 5] = ["name", "version", "channel", "crate", "durable"];

/// What the grammar looks like, for messages.
const USAGE: &str =
    "#[event(name = \"...\", version = N, channel = \"...\", crate = \"...\", durable)]";

/// The values `version` accepts, for messages.
const VERSION_RANGE: &str = "an integer from 1 to 4294967295";

/// The values given in a type's `#[event(...)]` attributes, each with its tokens for spans.
#[derive(Debug, Default)]
pub(crate) struct Attrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<(u32, Span)>,
    pub(crate) channel: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
    /// `durable`, with its span.
    pub(crate) durable: Option<Span>,
}

impl Attrs {
    /// Parses every `#[event]` attribute among `attrs`.
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Attrs {
        let mut parser = Parser {
            cx,
            attrs: Attrs::default(),
            seen: Vec::new(),
        };
        for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
            match &attr.meta {
                Meta::List(list) if is_paren(list) => parser.list(list.tokens.clone()),
                Meta::List(list) => cx.error_at(
                    list.delimiter.span().join(),
                    format!("expected parentheses: {USAGE}"),
                ),
                Meta::Path(path) => {
                    cx.error_spanned_by(path, format!("`#[event]` needs at least one key: {USAGE}"))
                }
                Meta::NameValue(nv) => cx.error_spanned_by(
                    nv,
                    format!("expected a list of keys in parentheses: {USAGE}"),
                ),
            }
        }
        parser.attrs
    }
}

fn is_paren(list: &MetaList) -> bool {
    matches!(list.delimiter, syn::MacroDelimiter::Paren(_))
}

/// Reports an `#[event]` attribute placed on a field or variant instead of on the type.
pub(crate) fn reject_misplaced(cx: &Ctxt, attrs: &[Attribute], place: &str) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        cx.error_spanned_by(
            attr,
            format!("`#[event]` goes on the type, not on a {place}"),
        );
    }
}

struct Parser<'a> {
    cx: &'a Ctxt,
    attrs: Attrs,
    /// Keys already given, valid or not, so a second occurrence is reported as a duplicate.
    seen: Vec<&'static str>,
}

impl Parser<'_> {
    /// Parses the comma-separated items inside `#[event(...)]`.
    fn list(&mut self, tokens: TokenStream) {
        let mut item = Vec::new();
        let mut tokens = tokens.into_iter().peekable();
        while let Some(token) = tokens.next() {
            match token {
                TokenTree::Punct(p) if p.as_char() == ',' => {
                    if item.is_empty() {
                        self.cx
                            .error_at(p.span(), "expected `key = value` before this comma");
                    } else {
                        self.item(std::mem::take(&mut item));
                    }
                }
                other => item.push(other),
            }
            if tokens.peek().is_none() && !item.is_empty() {
                self.item(std::mem::take(&mut item));
            }
        }
    }

    /// Parses one `key = value` item.
    fn item(&mut self, tokens: Vec<TokenTree>) {
        let Some((key, key_ident)) = self.key(&tokens) else {
            return;
        };
        if key == "durable" {
            self.durable(key_ident, &tokens);
            return;
        }
        let Some(value) = self.value(key, key_ident, &tokens) else {
            return;
        };
        match key {
            "name" => self.attrs.name = self.string(key, &value),
            "channel" => self.attrs.channel = self.string(key, &value),
            "crate" => self.attrs.krate = self.krate(&value),
            _ => self.attrs.version = self.version(&value),
        }
    }

    /// The item's key, if it is one of [`KEYS`] and not given before, with its token.
    fn key<'t>(&mut self, tokens: &'t [TokenTree]) -> Option<(&'static str, &'t Ident)> {
        let cx = self.cx;
        let Some(TokenTree::Ident(key_ident)) = tokens.first() else {
            cx.error_spanned_by(
                TokenStream::from_iter(tokens.iter().cloned()),
                format!("expected `key = value`, where the key is one of {}", keys()),
            );
            return None;
        };
        let key_text = key_ident.to_string();
        let Some(key) = KEYS.iter().copied().find(|k| *k == key_text) else {
            let hint = KEYS
                .iter()
                .find(|k| edit_distance(k, &key_text) <= 2)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            cx.error_at(
                key_ident.span(),
                format!(
                    "unknown key `{key_text}` in #[event]{hint}; the accepted keys are {}",
                    keys()
                ),
            );
            return None;
        };
        if self.seen.contains(&key) {
            cx.error_at(
                key_ident.span(),
                format!("duplicate key `{key}`: it is already set, and each #[event] key may be given only once"),
            );
            return None;
        }
        self.seen.push(key);
        Some((key, key_ident))
    }

    /// The `durable` flag, which takes no value.
    fn durable(&mut self, key_ident: &Ident, tokens: &[TokenTree]) {
        match tokens.get(1) {
            None => self.attrs.durable = Some(key_ident.span()),
            Some(other) => self.cx.error_at(
                other.span(),
                "`durable` is a flag and takes no value: write `#[event(durable)]`",
            ),
        }
    }

    /// The value after `key =`, or an error on a missing `=` or value.
    fn value(&self, key: &str, key_ident: &Ident, tokens: &[TokenTree]) -> Option<Expr> {
        let cx = self.cx;
        let example = example(key);
        match tokens.get(1) {
            Some(TokenTree::Punct(eq)) if eq.as_char() == '=' => {
                if tokens.len() == 2 {
                    cx.error_at(
                        eq.span(),
                        format!("expected a value after `=`, as in `{example}`"),
                    );
                    return None;
                }
                match parse_value.parse2(TokenStream::from_iter(tokens[2..].iter().cloned())) {
                    Ok(value) => Some(ungroup(value)),
                    Err(err) => {
                        cx.syn_error(err);
                        None
                    }
                }
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
                cx.error_at(
                    g.span(),
                    format!("expected `=` and a value, as in `{example}`, not parentheses"),
                );
                None
            }
            None => {
                cx.error_at(
                    key_ident.span(),
                    format!("`{key}` needs a value, as in `{example}`"),
                );
                None
            }
            Some(other) => {
                cx.error_at(
                    other.span(),
                    format!("expected `=` after `{key}`, as in `{example}`"),
                );
                None
            }
        }
    }

    /// The `crate` value: a string literal holding a path.
    fn krate(&self, value: &Expr) -> Option<syn::Path> {
        let lit = self.string("crate", value)?;
        match lit.parse::<syn::Path>() {
            Ok(path) => Some(path),
            Err(_) => {
                self.cx.error_spanned_by(
                    &lit,
                    format!(
                        "`crate` must be the path of the eventbus crate, as in `crate = \"::eventbus\"` or `crate = \"my_crate::eventbus\"`; `{}` is not a path",
                        lit.value()
                    ),
                );
                None
            }
        }
    }

    /// A string literal value, or an error on whatever was given instead.
    fn string(&self, key: &str, value: &Expr) -> Option<LitStr> {
        if let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = value
        {
            return Some(lit.clone());
        }
        self.cx.error_spanned_by(
            value,
            format!(
                "expected a string literal for `{key}`, as in `{}`, found {}",
                example(key),
                describe(value)
            ),
        );
        None
    }

    /// The `version` value: an integer literal from 1 to `u32::MAX`.
    fn version(&self, value: &Expr) -> Option<(u32, Span)> {
        let lit = self.version_literal(value)?;
        self.version_number(lit)
    }

    /// The integer literal given for `version`, or an error naming what was given instead.
    fn version_literal<'v>(&self, value: &'v Expr) -> Option<&'v LitInt> {
        let cx = self.cx;
        match value {
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => Some(lit),
            Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
                cx.error_spanned_by(
                    value,
                    format!("`version` must be {VERSION_RANGE}, not negative"),
                );
                None
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) if s.value().trim().parse::<u64>().is_ok() => {
                cx.error_spanned_by(
                    value,
                    format!(
                        "`version` takes an integer literal, not a string: write `version = {}`",
                        s.value().trim()
                    ),
                );
                None
            }
            _ => {
                cx.error_spanned_by(
                    value,
                    format!(
                        "`version` must be {VERSION_RANGE}, as in `version = 2`, found {}",
                        describe(value)
                    ),
                );
                None
            }
        }
    }

    /// The number of a `version` literal: no suffix but `u32`, and in range.
    fn version_number(&self, lit: &LitInt) -> Option<(u32, Span)> {
        let cx = self.cx;
        if !matches!(lit.suffix(), "" | "u32") {
            cx.error_spanned_by(
                lit,
                format!(
                    "`version` must be {VERSION_RANGE}; drop the `{}` suffix",
                    lit.suffix()
                ),
            );
            return None;
        }
        match lit.base10_digits().parse::<u32>() {
            Ok(0) => {
                cx.error_spanned_by(
                    lit,
                    format!("`version` must be {VERSION_RANGE}: versions start at 1"),
                );
                None
            }
            Ok(version) => Some((version, lit.span())),
            Err(_) => {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "`version` {} is too large: it must be {VERSION_RANGE} (a u32)",
                        lit.base10_digits()
                    ),
                );
                None
            }
        }
    }
}

/// Parses one value expression, which must be followed by the next `,` or the end.
fn parse_value(input: ParseStream<'_>) -> syn::Result<Expr> {
    let value = input.parse()?;
    if !input.is_empty() {
        return Err(input.error(format!(
            "expected `,` before this; keys are separated by commas: {USAGE}"
        )));
    }
    Ok(value)
}

/// Unwraps the invisible groups a `macro_rules!` caller may leave around a value.
fn ungroup(mut value: Expr) -> Expr {
    while let Expr::Group(group) = value {
        value = *group.expr;
    }
    value
}

fn keys() -> String {
    let quoted: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "{} and {}",
        quoted[..quoted.len() - 1].join(", "),
        quoted[quoted.len() - 1]
    )
}

fn example(key: &str) -> &'static str {
    match key {
        "name" => "name = \"user_created\"",
        "version" => "version = 2",
        "channel" => "channel = \"events:user_created\"",
        "durable" => "durable",
        _ => "crate = \"::eventbus\"",
    }
}

/// Names the kind of value given, for "found ..." messages.
fn describe(value: &Expr) -> String {
    let kind = match value {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Str(_) => "a string",
            Lit::Int(_) => "an integer",
            Lit::Float(_) => "a floating-point number",
            Lit::Bool(_) => "a boolean",
            Lit::Char(_) => "a character",
            Lit::ByteStr(_) | Lit::CStr(_) | Lit::Byte(_) => "a byte literal",
            _ => "a literal",
        },
        Expr::Path(_) => "a path",
        _ => "an expression",
    };
    // Token streams print paths as `:: eventbus`; show them as written.
    let text = value
        .to_token_stream()
        .to_string()
        .replace(":: ", "::")
        .replace(" ::", "::");
    format!("{kind} `{text}`")
}

/// Levenshtein distance, for "did you mean" hints on short keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("name", "name"), 0);
        assert_eq!(edit_distance("name", "nmae"), 2);
        assert_eq!(edit_distance("version", "verison"), 2);
        assert_eq!(edit_distance("channel", "chanel"), 1);
        assert_eq!(edit_distance("crate", "krate"), 1);
        assert!(edit_distance("name", "topic") > 2);
    }

    #[test]
    fn key_list() {
        assert_eq!(
            keys(),
            "`name`, `version`, `channel`, `crate` and `durable`"
        );
    }
}
