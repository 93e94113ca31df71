//! `#[eventbus::handler]`: checks one async fn as a handler.
//!
//! The fn is emitted unchanged. Next to it, a `const _` holds a function that is compiled and
//! never run: it asserts, each spanned on its own token, that the first argument is something a
//! handler receives, that each other argument comes from the handler's context, that `State<S>`
//! arguments hold state that can be cloned, that the return type is one a handler may return,
//! and that the future is `Send`. Mistakes the compiler could only report vaguely (a borrowed
//! event, a generic fn) are reported directly.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::Parser as _;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, ItemFn, LitStr, Meta, PathArguments, ReturnType, Signature, Token, Type,
};

use crate::ctxt::Ctxt;

/// At most this many arguments follow the first.
const MAX_EXTRA: usize = 3;

/// Expands `#[eventbus::handler]` with `args` on `item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let krate = krate(&cx, args);
    let checks = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => checks(&cx, &krate, &function),
        Err(e) => {
            cx.error_at(
                e.span(),
                "#[eventbus::handler] goes on an `async fn`, the handler to check",
            );
            TokenStream::new()
        }
    };
    let errors = cx.check().err().map(|e| e.to_compile_error());
    // The fn first and unchanged, so that it can still be registered and called.
    quote! {
        #item
        #errors
        #checks
    }
}

/// The path of the eventbus crate: `crate = "..."` or `::eventbus`.
fn krate(cx: &Ctxt, args: TokenStream) -> syn::Path {
    let default = syn::parse_quote!(::eventbus);
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(e) => {
            cx.syn_error(e);
            return default;
        }
    };
    let mut krate = default;
    for meta in metas {
        let parsed = match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("crate") => {
                syn::parse2::<LitStr>(nv.value.to_token_stream()).and_then(|lit| lit.parse())
            }
            _ => Err(syn::Error::new_spanned(
                &meta,
                "#[eventbus::handler] takes no arguments but `crate = \"path::to::eventbus\"`",
            )),
        };
        match parsed {
            Ok(path) => krate = path,
            Err(e) => cx.syn_error(e),
        }
    }
    krate
}

/// The checks for `function`, or nothing if its shape is already wrong.
fn checks(cx: &Ctxt, krate: &syn::Path, function: &ItemFn) -> TokenStream {
    let sig = &function.sig;
    if !is_async_and_concrete(cx, sig) {
        return TokenStream::new();
    }
    let types = argument_types(cx, sig);
    let Some((first, extra)) = types.split_first() else {
        cx.error_spanned_by(
            &sig.ident,
            "a handler takes what it receives as its first argument: the event `E`, `Envelope<E>`, `Envelope<serde_json::Value>` or `eventbus::Message`",
        );
        return TokenStream::new();
    };
    if let Some(too_many) = extra.get(MAX_EXTRA) {
        cx.error_spanned_by(
            too_many,
            format!("a handler takes at most {MAX_EXTRA} arguments after the first"),
        );
    }
    let mut asserts = Vec::new();
    asserts.extend(first_argument(cx, krate, first));
    for ty in extra {
        asserts.extend(extra_argument(cx, krate, ty));
    }
    asserts.extend(return_type(krate, &sig.output));
    asserts.push(future_is_send(krate, sig, &types));
    quote! {
        #[allow(warnings, clippy::all)]
        const _: () = {
            fn check() {
                #(#asserts)*
            }
        };
    }
}

/// A handler is an `async fn` without generic parameters; anything else is reported here.
fn is_async_and_concrete(cx: &Ctxt, sig: &Signature) -> bool {
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "a handler is an `async fn`: add `async` (closures are handlers too, but this attribute checks fns)",
        );
        return false;
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "#[eventbus::handler] checks fns without generic parameters: the bus needs one concrete event type per handler",
        );
        return false;
    }
    true
}

/// The types of the fn's arguments; a `self` argument is reported.
fn argument_types<'s>(cx: &Ctxt, sig: &'s Signature) -> Vec<&'s Type> {
    let mut types = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => cx.error_spanned_by(
                receiver,
                "a handler is a free `async fn`: it cannot take `self`",
            ),
            FnArg::Typed(typed) => types.push(&*typed.ty),
        }
    }
    types
}

/// The check of the return type, if one is written.
fn return_type(krate: &syn::Path, output: &ReturnType) -> Option<TokenStream> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    Some(quote_spanned!(ty.span()=>
        #krate::__private::debug_handler::return_type::<#ty>();
    ))
}

/// The check that the future of a call with arguments of `types` is `Send`.
fn future_is_send(krate: &syn::Path, sig: &Signature, types: &[&Type]) -> TokenStream {
    let ident = &sig.ident;
    let values = types
        .iter()
        .map(|ty| quote!(#krate::__private::debug_handler::value::<#ty>()));
    quote_spanned!(ident.span()=>
        #krate::__private::debug_handler::future_is_send(#ident(#(#values),*));
    )
}

/// The check of the first argument; a borrowed one is an error of its own.
fn first_argument(cx: &Ctxt, krate: &syn::Path, ty: &Type) -> Option<TokenStream> {
    if let Type::Reference(reference) = ty {
        cx.error_spanned_by(
            ty,
            format!(
                "a handler takes what it receives by value, not by reference: write `{}`; each handler gets its own decoded copy, which it may keep",
                reference.elem.to_token_stream()
            ),
        );
        return None;
    }
    Some(quote_spanned!(ty.span()=>
        #krate::__private::debug_handler::first_argument::<#ty, _>();
    ))
}

/// The check of an argument after the first: `State<S>` has a check of its own.
fn extra_argument(cx: &Ctxt, krate: &syn::Path, ty: &Type) -> Option<TokenStream> {
    if let Type::Reference(reference) = ty {
        cx.error_spanned_by(
            ty,
            format!(
                "handler arguments are taken by value, not by reference: write `{}`",
                reference.elem.to_token_stream()
            ),
        );
        return None;
    }
    Some(match state_type(ty) {
        Some(state) => quote_spanned!(ty.span()=>
            #krate::__private::debug_handler::state_argument::<#ty, #state>();
        ),
        None => quote_spanned!(ty.span()=>
            #krate::__private::debug_handler::extra_argument::<#ty>();
        ),
    })
}

/// `S` when `ty` is written `State<S>` (or `path::State<S>`).
fn state_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last().filter(|_| path.qself.is_none())?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(state)] if last.ident == "State" => Some(state),
        _ => None,
    }
}
