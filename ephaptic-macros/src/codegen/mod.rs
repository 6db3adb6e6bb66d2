//! The code each attribute writes, one module per attribute. The user's item is re-emitted
//! unchanged; the generated items sit beside it in a `const _: () = { ... };` block, hidden,
//! prefixed `__ephaptic_`, and reach every dependency through `::ephaptic::__private`. The
//! autoref ladders that pick a return shape or a TypeScript description are macros there
//! (`outcome!`, `announce_kind!`, `describe!`, `answer!`), defined beside the traits they
//! climb; nothing here counts their rungs.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;

mod data;
mod error;
mod event;
mod expose;
mod identity_loader;
mod model;

pub use error::error;
pub use event::event;
pub use expose::expose;
pub use identity_loader::identity_loader;
pub use model::model;

/// Turns an expansion result into tokens: on error, the errors plus the original item, so one
/// mistake does not cascade into "cannot find function" errors elsewhere.
pub fn finish(name: &str, result: syn::Result<TokenStream2>, original: TokenStream) -> TokenStream {
    let tokens = match result {
        Ok(tokens) => tokens,
        Err(e) => {
            let original: TokenStream2 = original.into();
            let errors = e.to_compile_error();
            quote!(#errors #original)
        }
    };
    if std::env::var_os("EPHAPTIC_MACROS_DEBUG").is_some_and(|v| v != "0") {
        eprintln!("#[ephaptic::{name}] expands to:\n{tokens}\n");
    }
    tokens.into()
}

/// A span that reports errors at the user's token but resolves names like the rest of the
/// generated code, so generated locals still see each other when the user's tokens come from
/// a `macro_rules!` expansion (whose hygiene they carry).
pub(crate) fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

pub(crate) fn site(rust_name: &str) -> TokenStream2 {
    quote! {
        ::ephaptic::__private::Site {
            rust_name: #rust_name,
            module: ::std::module_path!(),
            file: ::std::file!(),
            line: ::std::line!(),
        }
    }
}
