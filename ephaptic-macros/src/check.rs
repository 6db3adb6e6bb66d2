//! Rules the macros enforce, each reported at the offending token with what to write instead.

use syn::visit::Visit;
use syn::{ItemFn, Type};

use crate::ctxt::Ctxt;
use crate::model::{Function, Param};

/// Codes the runtime answers with itself; an application error must not reuse them.
const RESERVED_CODES: &[&str] = &["INTERNAL", "VALIDATION_ERROR", "NOT_FOUND", "UNAUTHORIZED", "RATELIMIT", "BAD_FRAME", "FRAME_TOO_LARGE"];

/// The signature rules shared by every function attribute.
pub fn signature(cx: &mut Ctxt, item: &ItemFn, attr: &str) {
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        cx.error(
            &sig.generics,
            format_args!(
                "#[ephaptic::{attr}] functions cannot be generic: clients call them by name, so every type must be concrete; write a concrete type, or one function per type"
            ),
        );
    } else if let Some(w) = &sig.generics.where_clause {
        cx.error(w, format_args!("#[ephaptic::{attr}] functions cannot have a `where` clause; use concrete types"));
    }
    for input in &sig.inputs {
        if let syn::FnArg::Typed(pt) = input {
            let mut finder = ImplTraitFinder(None);
            finder.visit_type(&pt.ty);
            if let Some(span_at) = finder.0 {
                cx.error(
                    span_at,
                    format_args!("#[ephaptic::{attr}] parameters cannot be `impl Trait` (that makes the function generic); write a concrete type"),
                );
            }
        }
    }
    if let Some(c) = &sig.constness {
        cx.error(c, format_args!("#[ephaptic::{attr}] cannot go on a `const fn`; remove `const`"));
    }
    if let Some(u) = &sig.unsafety {
        cx.error(u, format_args!("#[ephaptic::{attr}] cannot go on an `unsafe fn`: clients cannot uphold its contract; make it safe"));
    }
    if let Some(abi) = &sig.abi {
        cx.error(abi, format_args!("#[ephaptic::{attr}] cannot go on an `extern` function; remove the ABI"));
    }
    if let Some(v) = &sig.variadic {
        cx.error(v, format_args!("#[ephaptic::{attr}] functions cannot be variadic"));
    }
}

pub fn exposed(cx: &mut Ctxt, f: &Function<'_>) {
    signature(cx, f.item, "expose");
    for p in &f.params {
        if let Param::Wire { ty, .. } = p {
            owned(cx, ty, "parameters of exposed functions");
        }
    }
}

pub fn loader(cx: &mut Ctxt, f: &Function<'_>) {
    signature(cx, f.item, "identity_loader");
    let wire: Vec<_> = f.wire_params().collect();
    if wire.len() != 1 || f.params.len() != 1 {
        cx.error(
            &f.item.sig.inputs,
            "an identity loader takes exactly one parameter, the client's `auth` value, e.g. `auth: Option<String>` (an `Option` also accepts clients that send no auth)",
        );
    }
    for (_, ty) in wire {
        owned(cx, ty, "the identity loader's parameter");
    }
    if f.returns_unit() {
        cx.error(&f.item.sig, "an identity loader returns `Option<I>` (the identity, or `None` for anonymous), e.g. `-> Option<u64>`");
    }
}

pub fn error_code(cx: &mut Ctxt, code: &syn::LitStr) {
    let value = code.value();
    if value.is_empty() {
        cx.error(code, "the error code must not be empty; write e.g. `code = \"INSUFFICIENT_FUNDS\"`");
    } else if RESERVED_CODES.contains(&value.as_str()) {
        cx.error(code, format_args!("`{value}` is a code the runtime answers with itself; choose an application code such as `{value}_APP`"));
    }
}

fn owned(cx: &mut Ctxt, ty: &Type, what: &str) {
    if let Type::Reference(r) = ty {
        cx.error(r, format_args!("{what} must own their data: write `String` instead of `&str`, `Vec<T>` instead of `&[T]`"));
    }
}

struct ImplTraitFinder(Option<syn::TypeImplTrait>);

impl<'ast> Visit<'ast> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, i: &'ast syn::TypeImplTrait) {
        if self.0.is_none() {
            self.0 = Some(i.clone());
        }
    }
}
