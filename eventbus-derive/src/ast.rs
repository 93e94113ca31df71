//! The derive input in the shape the checks need, keeping the original tokens for spans.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Generics, Ident, Index, Member};

use crate::attr::{self, Attrs};
use crate::ctxt::Ctxt;

/// A type that `#[derive(Event)]` was applied to.
pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) data: Data,
    pub(crate) attrs: Attrs,
}

/// The kind of type.
pub(crate) enum Data {
    Struct(Style, Vec<Field>),
    Enum,
    /// Unions cannot be events; the span is the `union` keyword.
    Union(Span),
}

/// How a struct's fields are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Named,
    Tuple,
    Unit,
}

/// A struct field that a channel placeholder can name.
pub(crate) struct Field {
    /// How the generated code reaches it: `self.user_id` or `self.0`.
    pub(crate) member: Member,
    /// How a placeholder names it: `user_id` (without any `r#`) or `0`.
    pub(crate) key: String,
    /// The field's tokens, for spans in the generated code.
    pub(crate) span: Span,
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Input<'a> {
        let attrs = Attrs::from_ast(cx, &input.attrs);
        let data = match &input.data {
            syn::Data::Struct(data) => {
                let (style, fields) = fields(cx, &data.fields);
                Data::Struct(style, fields)
            }
            syn::Data::Enum(data) => {
                for variant in &data.variants {
                    attr::reject_misplaced(cx, &variant.attrs, "variant");
                    fields(cx, &variant.fields);
                }
                Data::Enum
            }
            syn::Data::Union(data) => Data::Union(data.union_token.span),
        };
        Input {
            ident: &input.ident,
            generics: &input.generics,
            data,
            attrs,
        }
    }

    /// Whether an `impl Event` for this type could compile at all, so that a fallback impl
    /// hides follow-on errors instead of adding its own.
    pub(crate) fn can_implement(&self) -> bool {
        self.generics.params.is_empty() && !matches!(self.data, Data::Union(_))
    }
}

fn fields(cx: &Ctxt, fields: &syn::Fields) -> (Style, Vec<Field>) {
    let style = match fields {
        syn::Fields::Named(_) => Style::Named,
        syn::Fields::Unnamed(_) => Style::Tuple,
        syn::Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            attr::reject_misplaced(cx, &field.attrs, "field");
            let span = field.span();
            match &field.ident {
                Some(ident) => Field {
                    member: Member::Named(ident.clone()),
                    key: ident.unraw().to_string(),
                    span,
                },
                None => Field {
                    member: Member::Unnamed(Index {
                        index: i as u32,
                        span,
                    }),
                    key: i.to_string(),
                    span,
                },
            }
        })
        .collect();
    (style, fields)
}
