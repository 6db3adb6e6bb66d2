//! Procedural macros for [ephaptic](https://docs.rs/ephaptic). Use them through the `ephaptic`
//! crate (`#[ephaptic::expose]`, `#[ephaptic::event]`, `#[ephaptic::error]`,
//! `#[ephaptic::identity_loader]`, `#[ephaptic::model]`), whose docs list every option with an
//! example; the code they generate reaches its dependencies only through
//! `::ephaptic::__private`.
//!
//! Each entry point parses, expands, and on failure reports every error it found at once,
//! spanned at the user's code, followed by the original item so the rest of the crate still
//! type-checks. Set `EPHAPTIC_MACROS_DEBUG=1` to print each expansion at build time.

use proc_macro::TokenStream;

mod check;
mod codegen;
mod ctxt;
mod model;
mod parse;

/// Exposes a function to ephaptic clients. Options (`name`, `requires_login`, `idempotent`,
/// `rate_limit`, `broadcast`, `broadcast_to`) and examples: `ephaptic::expose`.
#[proc_macro_attribute]
pub fn expose(args: TokenStream, item: TokenStream) -> TokenStream {
    codegen::finish(
        "expose",
        codegen::expose(args.into(), item.clone().into()),
        item,
    )
}

/// Makes a struct (or a map-shaped enum) an event clients can listen for. Options (`name`,
/// `default`), field defaults (`#[ephaptic(default = ..)]`) and examples: `ephaptic::event`.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    codegen::finish(
        "event",
        codegen::event(args.into(), item.clone().into()),
        item,
    )
}

/// Makes a data type usable in exposed functions and exported to TypeScript: derives serde's
/// `Serialize`/`Deserialize` and ts-rs's `TS`, and records which fields clients may omit.
/// Options (`default`), field defaults and examples: `ephaptic::model`.
#[proc_macro_attribute]
pub fn model(args: TokenStream, item: TokenStream) -> TokenStream {
    codegen::finish(
        "model",
        codegen::model(args.into(), item.clone().into()),
        item,
    )
}

/// Declares an application error type with a fixed code. Options (`code`, `message`) and
/// examples: `ephaptic::error`.
#[proc_macro_attribute]
pub fn error(args: TokenStream, item: TokenStream) -> TokenStream {
    codegen::finish(
        "error",
        codegen::error(args.into(), item.clone().into()),
        item,
    )
}

/// Declares the identity loader that turns `init.auth` into the connection's identity. What
/// it may take and return, with examples: `ephaptic::identity_loader`.
#[proc_macro_attribute]
pub fn identity_loader(args: TokenStream, item: TokenStream) -> TokenStream {
    codegen::finish(
        "identity_loader",
        codegen::identity_loader(args.into(), item.clone().into()),
        item,
    )
}
