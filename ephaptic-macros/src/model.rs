//! What the macros know about the user's item, borrowed from syn so spans stay on their code.

use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::ctxt::Ctxt;
use crate::parse::{self, Once};

/// `#[expose(...)]` options.
pub struct ExposeArgs {
    pub name: Option<syn::LitStr>,
    pub requires_login: bool,
    /// Channels announced with the `Ok` value, and where the option was written.
    pub broadcast: Option<(syn::Meta, Vec<syn::LitStr>)>,
    pub broadcast_to: Option<(syn::Meta, syn::Path)>,
}

pub const EXPOSE_KEYS: &[&str] = &[
    "name = \"...\"",
    "requires_login",
    "broadcast = [\"channel\", ...]",
    "broadcast_to = audience_fn",
];

impl ExposeArgs {
    pub fn parse(cx: &mut Ctxt, metas: &[syn::Meta]) -> Self {
        let mut name = Once::new("name");
        let mut requires_login = Once::new("requires_login");
        let mut broadcast = Once::new("broadcast");
        let mut broadcast_to = Once::new("broadcast_to");
        for meta in metas {
            match parse::key(meta).as_str() {
                "name" => {
                    if let Some(v) = parse::string(cx, meta) {
                        name.set(cx, meta, v);
                    }
                }
                "requires_login" => {
                    if let Some(v) = parse::flag(cx, meta) {
                        requires_login.set(cx, meta, v);
                    }
                }
                "broadcast" => {
                    if let Some(v) = parse::strings(cx, meta) {
                        broadcast.set(cx, meta, (meta.clone(), v));
                    }
                }
                "broadcast_to" => {
                    if let Some(v) = parse::path(cx, meta) {
                        broadcast_to.set(cx, meta, (meta.clone(), v));
                    }
                }
                _ => parse::unknown(cx, "expose", meta, EXPOSE_KEYS),
            }
        }
        ExposeArgs {
            name: name.get(),
            requires_login: requires_login.get().unwrap_or(false),
            broadcast: broadcast.get(),
            broadcast_to: broadcast_to.get(),
        }
    }
}

/// `#[error(...)]` options.
pub struct ErrorArgs {
    pub code: Option<syn::LitStr>,
    pub message: Option<syn::LitStr>,
}

pub const ERROR_KEYS: &[&str] = &["code = \"...\"", "message = \"...\""];

impl ErrorArgs {
    pub fn parse(cx: &mut Ctxt, metas: &[syn::Meta]) -> Self {
        let mut code = Once::new("code");
        let mut message = Once::new("message");
        for meta in metas {
            match parse::key(meta).as_str() {
                "code" => {
                    if let Some(v) = parse::string(cx, meta) {
                        code.set(cx, meta, v);
                    }
                }
                "message" => {
                    if let Some(v) = parse::string(cx, meta) {
                        message.set(cx, meta, v);
                    }
                }
                _ => parse::unknown(cx, "error", meta, ERROR_KEYS),
            }
        }
        ErrorArgs {
            code: code.get(),
            message: message.get(),
        }
    }
}

/// `#[event(...)]` options.
pub struct EventArgs {
    pub name: Option<syn::LitStr>,
}

pub const EVENT_KEYS: &[&str] = &["name = \"...\""];

impl EventArgs {
    pub fn parse(cx: &mut Ctxt, metas: &[syn::Meta]) -> Self {
        let mut name = Once::new("name");
        for meta in metas {
            match parse::key(meta).as_str() {
                "name" => {
                    if let Some(v) = parse::string(cx, meta) {
                        name.set(cx, meta, v);
                    }
                }
                _ => parse::unknown(cx, "event", meta, EVENT_KEYS),
            }
        }
        EventArgs { name: name.get() }
    }
}

/// A parameter of an exposed function.
pub enum Param<'a> {
    /// Comes from the wire: bound from `args[index]` or `kwargs[name]`.
    Wire { name: String, ty: &'a Type },
    /// The caller's context, filled in by the server.
    Caller { ty: &'a Type },
}

/// A function under `#[expose]` or `#[identity_loader]`.
pub struct Function<'a> {
    pub item: &'a ItemFn,
    pub ident: &'a Ident,
    pub is_async: bool,
    pub params: Vec<Param<'a>>,
    pub doc: String,
}

impl<'a> Function<'a> {
    /// Reads the function; parameters that cannot be used are reported and left out.
    pub fn from_item(cx: &mut Ctxt, item: &'a ItemFn) -> Self {
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => cx.error(
                    r,
                    "exposed functions cannot take `self`: write a free function, and keep shared state in a static or behind a `std::sync::OnceLock`",
                ),
                FnArg::Typed(pt) => {
                    let name = match &*pt.pat {
                        Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                            pi.ident.to_string().trim_start_matches("r#").to_string()
                        }
                        other => {
                            cx.error(
                                other,
                                "write a plain parameter name (e.g. `point: Point`) and destructure inside the function; the name is the keyword clients use",
                            );
                            continue;
                        }
                    };
                    if is_caller(&pt.ty) {
                        params.push(Param::Caller { ty: &pt.ty });
                    } else {
                        params.push(Param::Wire { name, ty: &pt.ty });
                    }
                }
            }
        }
        Function {
            item,
            ident: &item.sig.ident,
            is_async: item.sig.asyncness.is_some(),
            params,
            doc: doc_of(&item.attrs),
        }
    }

    pub fn returns_unit(&self) -> bool {
        matches!(self.item.sig.output, ReturnType::Default)
    }

    pub fn wire_params(&self) -> impl Iterator<Item = (&str, &'a Type)> + '_ {
        self.params.iter().filter_map(|p| match p {
            Param::Wire { name, ty } => Some((name.as_str(), *ty)),
            Param::Caller { .. } => None,
        })
    }
}

/// A parameter whose type is `Caller` (any path ending in `Caller`) is the caller's context.
fn is_caller(ty: &Type) -> bool {
    match ty {
        Type::Path(tp) => {
            tp.qself.is_none()
                && tp
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Caller" && s.arguments.is_none())
        }
        _ => false,
    }
}

/// The `///` doc comment of an item, lines joined, the one leading space of each removed.
pub fn doc_of(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("doc")
            && let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            let line = s.value();
            lines.push(line.strip_prefix(' ').map(str::to_owned).unwrap_or(line));
        }
    }
    lines.join("\n").trim().to_string()
}
