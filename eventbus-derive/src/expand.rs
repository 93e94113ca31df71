//! Generates the `impl Event`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{DeriveInput, Member, parse_quote};

use crate::ast::Input;
use crate::check::{self, Channel, Spec};
use crate::ctxt::Ctxt;

/// Parses, checks and expands one `#[derive(Event)]`.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let ast = Input::from_syn(&cx, input);
    let spec = check::check(&cx, &ast);
    match (cx.check(), spec) {
        (Ok(()), Some(spec)) => impl_event(&ast, &spec),
        (Err(errors), _) => {
            let mut tokens = errors.to_compile_error();
            if ast.can_implement() {
                tokens.extend(fallback(&ast));
            }
            tokens
        }
        // `check` returns `None` only after reporting an error, so this is not reached; an
        // impl with empty strings is still the right answer if it ever is.
        (Ok(()), None) => fallback(&ast),
    }
}

/// The path of the eventbus crate: `crate = "..."` or `::eventbus`.
fn krate(input: &Input<'_>) -> syn::Path {
    input
        .attrs
        .krate
        .clone()
        .unwrap_or_else(|| parse_quote!(::eventbus))
}

/// With the `schema` feature, the event's JSON Schema through schemars: every event type must
/// then derive `schemars::JsonSchema` too (the bound's message says so).
fn schema_fn(krate: &syn::Path) -> TokenStream {
    if cfg!(feature = "schema") {
        quote! {
            fn data_schema() -> #krate::__private::Option<#krate::__private::Value> {
                #krate::__private::Option::Some(#krate::__private::json_schema::<Self>())
            }
        }
    } else {
        TokenStream::new()
    }
}

fn impl_event(input: &Input<'_>, spec: &Spec) -> TokenStream {
    let krate = krate(input);
    let schema = schema_fn(&krate);
    let ident = input.ident;
    let where_clause = &input.generics.where_clause;
    let name = &spec.name;
    let version = spec.version;
    let durable = spec.durable;
    let body = match &spec.channel {
        Channel::Fixed(channel) => fixed_channel_items(&krate, channel),
        Channel::Keyed {
            template,
            pattern,
            args,
        } => keyed_channel_items(&krate, template, pattern, args),
    };
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident #where_clause {
                const TYPE: &'static str = #name;
                const VERSION: u32 = #version;
                const DURABLE: bool = #durable;
                #body
                #schema

                fn __type_index() -> #krate::__private::Option<usize> {
                    static INDEX: #krate::__private::OnceLock<usize> =
                        #krate::__private::OnceLock::new();
                    #krate::__private::Option::Some(
                        *INDEX.get_or_init(#krate::__private::next_type_index),
                    )
                }

                fn __clone_event(&self) -> #krate::__private::Option<Self> {
                    #[allow(unused_imports)]
                    use #krate::__private::{CloneProbe as _, NoCloneProbe as _};
                    (&&#krate::__private::Probe(self)).probe_clone()
                }
            }
        };
    }
}

/// The channel items of an event with one channel for every value.
fn fixed_channel_items(krate: &syn::Path, channel: &str) -> TokenStream {
    quote! {
        const CHANNEL: &'static str = #channel;

        fn try_channel(
            &self,
        ) -> #krate::__private::Result<#krate::__private::Cow<'static, str>, #krate::ChannelError>
        {
            #krate::__private::Result::Ok(#krate::__private::Cow::Borrowed(#channel))
        }
    }
}

/// The channel items of an event with a channel per value, filled in from `args`, each key
/// spanned on its field.
fn keyed_channel_items(
    krate: &syn::Path,
    template: &str,
    pattern: &str,
    args: &[(Member, Span)],
) -> TokenStream {
    let keys = args
        .iter()
        .map(|(member, span)| quote_spanned!(*span=> #krate::__private::key(&self.#member)));
    quote! {
        const CHANNEL: &'static str = #template;
        const PATTERN: #krate::__private::Option<&'static str> =
            #krate::__private::Option::Some(#pattern);

        fn channel(&self) -> #krate::__private::Cow<'static, str> {
            #krate::__private::unchecked_channel(self.try_channel(), #template)
        }

        fn try_channel(
            &self,
        ) -> #krate::__private::Result<#krate::__private::Cow<'static, str>, #krate::ChannelError>
        {
            #krate::__private::Result::map(
                #krate::__private::fill_channel(#template, &[#(#keys),*]),
                #krate::__private::Cow::Owned,
            )
        }
    }
}

/// An impl with empty values, emitted next to the errors so that uses of the type's `Event`
/// impl elsewhere do not add "trait not implemented" errors of their own.
fn fallback(input: &Input<'_>) -> TokenStream {
    let krate = krate(input);
    let ident = input.ident;
    let where_clause = &input.generics.where_clause;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident #where_clause {
                const TYPE: &'static str = "";
                const CHANNEL: &'static str = "";
            }
        };
    }
}
