//! Rules the macros enforce, each reported at the offending token with what to write instead.

use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{ItemFn, Type};

use crate::ctxt::Ctxt;
use crate::model::{
    Fields, Function, Param, bad_serde_default, is_caller, is_handshake, serde_metas,
};

/// Codes the runtime answers with itself; an application error must not reuse them.
const RESERVED_CODES: &[&str] = &[
    "INTERNAL",
    "VALIDATION_ERROR",
    "NOT_FOUND",
    "UNAUTHORIZED",
    "RATELIMIT",
    "BAD_FRAME",
    "FRAME_TOO_LARGE",
];

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
        cx.error(
            w,
            format_args!(
                "#[ephaptic::{attr}] functions cannot have a `where` clause; use concrete types"
            ),
        );
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
        cx.error(
            c,
            format_args!("#[ephaptic::{attr}] cannot go on a `const fn`; remove `const`"),
        );
    }
    if let Some(u) = &sig.unsafety {
        cx.error(u, format_args!("#[ephaptic::{attr}] cannot go on an `unsafe fn`: clients cannot uphold its contract; make it safe"));
    }
    if let Some(abi) = &sig.abi {
        cx.error(
            abi,
            format_args!("#[ephaptic::{attr}] cannot go on an `extern` function; remove the ABI"),
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error(
            v,
            format_args!("#[ephaptic::{attr}] functions cannot be variadic"),
        );
    }
}

pub fn exposed(cx: &mut Ctxt, f: &Function<'_>) {
    signature(cx, f.item, "expose");
    for p in &f.params {
        if let Param::Wire { ty, .. } = p {
            let inner = match ty {
                Type::Reference(r) => &*r.elem,
                other => other,
            };
            if let (Type::Reference(r), true) = (ty, is_caller(inner)) {
                cx.error(
                    r,
                    "take `Caller` by value: `caller: Caller` (it is cheap to clone)",
                );
            } else if is_handshake(inner) {
                cx.error(
                    ty,
                    "an exposed function reads the upgrade request through its caller: take `caller: Caller` and call `caller.handshake()` (kept with `Server::keep_handshake()`)",
                );
            } else {
                owned(cx, ty, "parameters of exposed functions");
            }
        }
    }
}

pub fn loader(cx: &mut Ctxt, f: &Function<'_>) {
    signature(cx, f.item, "identity_loader");
    for p in &f.params {
        if let Param::Caller { ty } = p {
            cx.error(
                ty,
                "an identity loader runs before any call, so it has no `Caller`; take `handshake: ephaptic::Handshake` for the upgrade request (headers, cookies, peer address)",
            );
        }
    }
    // `&Handshake` counts as the handshake here, so that its own error is the only one.
    let any_handshake =
        |ty: &Type| is_handshake(ty) || matches!(ty, Type::Reference(r) if is_handshake(&r.elem));
    let auth = f.wire_params().filter(|(_, ty)| !any_handshake(ty)).count();
    let handshakes = f.wire_params().filter(|(_, ty)| any_handshake(ty)).count();
    let callers = f.params.len() - f.wire_params().count();
    if auth > 1 || handshakes > 1 || (auth == 0 && handshakes == 0 && callers == 0) {
        let message = "an identity loader takes the client's `auth` value, the upgrade request, or both: `auth: Option<String>`, `auth: Option<String>, handshake: ephaptic::Handshake`, or `handshake: ephaptic::Handshake` (an `Option` also accepts clients that send no auth)";
        if f.item.sig.inputs.is_empty() {
            // Nothing to point at but the empty parentheses, where the parameter goes.
            cx.push(syn::Error::new(f.item.sig.paren_token.span.join(), message));
        } else {
            cx.error(&f.item.sig.inputs, message);
        }
    }
    for (_, ty) in f.wire_params() {
        match ty {
            Type::Reference(r) if is_handshake(&r.elem) => cx.error(
                r,
                "take the `Handshake` by value (`handshake: ephaptic::Handshake`); it is one `Arc`, cheap to clone",
            ),
            _ => owned(cx, ty, "the identity loader's parameter"),
        }
    }
    let message = "an identity loader returns `Option<I>` (the identity, or `None` for anonymous), e.g. `-> Option<u64>`";
    if f.returns_unit() {
        cx.error(&f.item.sig, message);
    } else if let syn::ReturnType::Type(_, ty) = &f.item.sig.output
        && matches!(&**ty, Type::Tuple(t) if t.elems.is_empty())
    {
        cx.error(ty, message);
    }
}

pub fn error_code(cx: &mut Ctxt, code: &syn::LitStr) {
    let value = code.value();
    if value.is_empty() {
        cx.error(
            code,
            "the error code must not be empty; write e.g. `code = \"INSUFFICIENT_FUNDS\"`",
        );
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

/// `ephaptic::to(1, 2, 3)` in a function's body: the compiler's own help ("remove the extra
/// arguments") would send the event to user 1 only, so it is reported here, at the call, with
/// the two spellings that reach every user named; the call is rewritten to `ephaptic::to!(..)`
/// so that the compiler's misleading help does not follow. Only the `ephaptic::to` path is
/// looked for: a function of the application's own may be called `to`.
pub fn audiences(cx: &mut Ctxt, item: &mut ItemFn) {
    struct Calls<'c>(&'c mut Ctxt);
    impl VisitMut for Calls<'_> {
        fn visit_expr_mut(&mut self, expr: &mut syn::Expr) {
            syn::visit_mut::visit_expr_mut(self, expr);
            let syn::Expr::Call(call) = expr else {
                return;
            };
            let syn::Expr::Path(p) = &*call.func else {
                return;
            };
            let named = p.qself.is_none()
                && p.path.segments.len() == 2
                && p.path.segments[0].ident == "ephaptic"
                && p.path.segments[1].ident == "to";
            if !named || call.args.len() < 2 {
                return;
            }
            let args = &call.args;
            let list = args
                .iter()
                .map(|a| quote::quote!(#a).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            self.0.error(
                &*call,
                format_args!(
                    "`ephaptic::to` takes one audience, and this passes {}: to reach each of them write `ephaptic::to!({list})` or `ephaptic::to([{list}])`",
                    args.len()
                ),
            );
            *expr = syn::parse_quote_spanned!(call.func.span()=> ::ephaptic::to!(#args));
        }
    }
    Calls(cx).visit_block_mut(&mut item.block);
}

/// `broadcast` names channels once each; `broadcast_to` needs `broadcast`.
pub fn broadcast(cx: &mut Ctxt, args: &crate::model::ExposeArgs) {
    if let Some((meta, channels)) = &args.broadcast {
        if channels.is_empty() {
            cx.error(
                meta,
                "`broadcast` needs at least one channel name, e.g. `broadcast = [\"todoCreated\"]`",
            );
        }
        for (i, c) in channels.iter().enumerate() {
            if c.value().is_empty() {
                cx.error(
                    c,
                    "a channel name must not be empty; write a name, e.g. \"todoCreated\"",
                );
            } else if channels[..i].iter().any(|p| p.value() == c.value()) {
                cx.error(
                    c,
                    format_args!("channel `{}` is listed twice; keep one", c.value()),
                );
            }
        }
    }
    if let (Some((meta, _)), None) = (&args.broadcast_to, &args.broadcast) {
        cx.error(meta, "`broadcast_to` picks who hears the channels in `broadcast`; add `broadcast = [\"channel\"]`");
    }
}

/// Events travel as maps (their fields are the callback's data): reject shapes that would not.
pub fn event(cx: &mut Ctxt, item: &syn::DeriveInput) {
    if !item.generics.params.is_empty() {
        cx.error(
            &item.generics,
            "#[ephaptic::event] types cannot be generic: clients and the TypeScript export need one concrete shape per event name; declare one event type per payload, with concrete field types",
        );
    }
    match &item.data {
        syn::Data::Struct(s) => match &s.fields {
            syn::Fields::Named(_) => {}
            syn::Fields::Unnamed(fields) => cx.error(
                fields,
                "an event struct needs named fields (`struct Pong { ok: bool }`): its fields are the data clients receive, by name",
            ),
            syn::Fields::Unit => cx.error(
                &item.ident,
                format_args!(
                    "an event struct needs named fields (`struct Pong {{ ok: bool }}`): its fields are the data clients receive; for an event with no data, write `struct {} {{}}`",
                    item.ident
                ),
            ),
        },
        syn::Data::Enum(e) => {
            let (tagged, untagged) = serde_enum_repr(&item.attrs);
            if !tagged {
                for v in &e.variants {
                    if !matches!(v.fields, syn::Fields::Named(_)) {
                        let (why, fix) = if untagged {
                            ("untagged", "replace `#[serde(untagged)]` with `#[serde(tag = \"type\")]`")
                        } else {
                            ("externally tagged", "add `#[serde(tag = \"type\")]` to the enum")
                        };
                        cx.error(
                            v,
                            format_args!(
                                "an {why} enum event must have only struct variants (`{} {{ id: u64 }}`) to travel as a map; or {fix}",
                                v.ident
                            ),
                        );
                    }
                }
            }
        }
        syn::Data::Union(u) => cx.error(
            u.union_token,
            "#[ephaptic::event] goes on a struct or an enum, not a union",
        ),
    }
}

/// Whether the enum has `#[serde(tag = ..)]` (internally or adjacently tagged: always a map),
/// and whether it is `#[serde(untagged)]`.
fn serde_enum_repr(attrs: &[syn::Attribute]) -> (bool, bool) {
    let (mut tagged, mut untagged) = (false, false);
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("tag") {
                tagged = true;
            } else if meta.path.is_ident("untagged") {
                untagged = true;
            }
            if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        });
    }
    (tagged, untagged)
}

/// `#[serde(default = 1)]` and `#[serde(default = "1")]`: serde's own error is followed by
/// every use of the `Serialize` it then does not derive. Reported here, once, with what to
/// write; the codegen leaves the bad key out so nothing else fails.
pub fn serde_defaults(cx: &mut Ctxt, item: &syn::DeriveInput) {
    for attr in &item.attrs {
        for meta in serde_metas(attr).unwrap_or_default() {
            if let Some((value, _)) = bad_serde_default(&meta) {
                cx.error(
                    value,
                    "serde takes a function path in a string: `#[serde(default = \"path::to_fn\")]`, or a bare `#[serde(default)]` for the type's `Default`",
                );
            }
        }
    }
    let fields: Vec<&syn::Field> = match &item.data {
        syn::Data::Struct(s) => s.fields.iter().collect(),
        syn::Data::Enum(e) => e.variants.iter().flat_map(|v| &v.fields).collect(),
        syn::Data::Union(_) => Vec::new(),
    };
    for field in fields {
        for attr in &field.attrs {
            for meta in serde_metas(attr).unwrap_or_default() {
                if let Some((value, suggestion)) = bad_serde_default(&meta) {
                    cx.error(
                        value,
                        format_args!(
                            "serde takes a function path in a string: write `#[ephaptic(default = {suggestion})]`, or `#[serde(default = \"path::to_fn\")]`"
                        ),
                    );
                }
            }
        }
    }
}

/// `#[ephaptic(default)]` is the field's only default, and the `Default` impl is ours.
pub fn field_defaults(
    cx: &mut Ctxt,
    item: &syn::DeriveInput,
    fields: &Fields<'_>,
    container_default: Option<&syn::Meta>,
    attr: &str,
) {
    for d in &fields.defaults {
        let serde_default = d.field.attrs.iter().any(|a| {
            serde_metas(a)
                .unwrap_or_default()
                .iter()
                .any(|m| m.path().is_ident("default"))
        });
        if serde_default {
            cx.error(
                d.attr,
                "this field's default is given twice, here and in `#[serde(default ..)]`: keep `#[ephaptic(default ..)]`, which also sets the `Default` impl and the TypeScript docs",
            );
        }
    }
    if let (Some(meta), syn::Data::Enum(_)) = (container_default, &item.data) {
        cx.error(
            meta,
            format_args!("`default` goes on a struct: an enum has no field defaults to use; write `#[derive(Default)]` and `#[default]` on a variant instead"),
        );
    }
    if fields.defaults.is_empty() && container_default.is_none() {
        return;
    }
    if let Some(path) = derive_path(&item.attrs, "Default") {
        cx.error(
            path,
            format_args!(
                "`#[derive(Default)]` would ignore the `#[ephaptic(default ..)]` values; remove it: ephaptic writes a `Default` that uses them when every field has one, or with `#[ephaptic::{attr}(default)]`"
            ),
        );
    }
}

/// The path of `name` in the item's `#[derive(..)]`, if it derives it.
fn derive_path(attrs: &[syn::Attribute], name: &str) -> Option<syn::Path> {
    let mut found = None;
    for a in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let _ = a.parse_nested_meta(|meta| {
            if found.is_none() && meta.path.segments.last().is_some_and(|s| s.ident == name) {
                found = Some(meta.path.clone());
            }
            Ok(())
        });
    }
    found
}
