//! Parsing attribute arguments: `key = value` and bare flags, each key set at most once, with
//! the same wording for every unknown or repeated key.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, Meta, Token};

use crate::ctxt::Ctxt;

/// A value that may be set once; a second setting is reported at the second key.
pub struct Once<T> {
    key: &'static str,
    value: Option<T>,
}

impl<T> Once<T> {
    pub fn new(key: &'static str) -> Self {
        Once { key, value: None }
    }

    pub fn set(&mut self, cx: &mut Ctxt, at: &impl quote::ToTokens, value: T) {
        if self.value.is_some() {
            cx.error(at, format_args!("`{}` is given twice; keep one", self.key));
        } else {
            self.value = Some(value);
        }
    }

    pub fn get(self) -> Option<T> {
        self.value
    }
}

/// Parses `a = "x", flag, b = true` into metas.
pub fn metas(args: TokenStream) -> syn::Result<Vec<Meta>> {
    Ok(Punctuated::<Meta, Token![,]>::parse_terminated
        .parse2(args)?
        .into_iter()
        .collect())
}

/// The key of a meta as a string (`name` in `name = ".."`).
pub fn key(meta: &Meta) -> String {
    meta.path()
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_else(|| quote::quote!(#meta).to_string())
}

/// The error for a key the attribute does not know, listing the keys it does.
pub fn unknown(cx: &mut Ctxt, attr: &str, meta: &Meta, known: &[&str]) {
    // The field attribute is `#[ephaptic(..)]`, the others `#[ephaptic::name]`.
    let attr = match attr {
        "ephaptic" => "#[ephaptic(..)]".to_string(),
        other => format!("#[ephaptic::{other}]"),
    };
    cx.error(
        meta.path(),
        format_args!(
            "unknown option `{}` for {attr}; the options are: {}",
            key(meta),
            known.join(", ")
        ),
    );
}

/// A string literal value: `key = "text"`.
pub fn string(cx: &mut Ctxt, meta: &Meta) -> Option<syn::LitStr> {
    if let Meta::NameValue(nv) = meta
        && let Expr::Lit(lit) = &nv.value
        && let Lit::Str(s) = &lit.lit
    {
        return Some(s.clone());
    }
    cx.error(
        meta,
        format_args!("write `{} = \"...\"` with a string", key(meta)),
    );
    None
}

/// A flag: bare `key` or `key = true|false`.
pub fn flag(cx: &mut Ctxt, meta: &Meta) -> Option<bool> {
    match meta {
        Meta::Path(_) => Some(true),
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(lit) => match &lit.lit {
                Lit::Bool(b) => Some(b.value),
                _ => {
                    cx.error(
                        &nv.value,
                        format_args!("write `{}` or `{} = true`", key(meta), key(meta)),
                    );
                    None
                }
            },
            other => {
                cx.error(
                    other,
                    format_args!("write `{}` or `{} = true`", key(meta), key(meta)),
                );
                None
            }
        },
        Meta::List(_) => {
            cx.error(
                meta,
                format_args!("write `{}` or `{} = true`", key(meta), key(meta)),
            );
            None
        }
    }
}

/// A list of string literals: `key = ["a", "b"]`.
pub fn strings(cx: &mut Ctxt, meta: &Meta) -> Option<Vec<syn::LitStr>> {
    if let Meta::NameValue(nv) = meta
        && let Expr::Array(array) = &nv.value
    {
        let mut out = Vec::new();
        for elem in &array.elems {
            match elem {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => out.push(s.clone()),
                other => cx.error(
                    other,
                    format_args!(
                        "each entry of `{}` is a string, e.g. \"todoCreated\"",
                        key(meta)
                    ),
                ),
            }
        }
        return Some(out);
    }
    if let Meta::NameValue(nv) = meta
        && let Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) = &nv.value
    {
        cx.error(
            s,
            format_args!(
                "write a list, even for one channel: `{} = [{}]`",
                key(meta),
                quote::quote!(#s)
            ),
        );
        return None;
    }
    cx.error(
        meta,
        format_args!(
            "write `{} = [\"channelName\", ...]` with a list of strings",
            key(meta)
        ),
    );
    None
}

/// A path to a function: `key = some::function`.
pub fn path(cx: &mut Ctxt, meta: &Meta) -> Option<syn::Path> {
    if let Meta::NameValue(nv) = meta
        && let Expr::Path(p) = &nv.value
        && p.qself.is_none()
    {
        return Some(p.path.clone());
    }
    if let Meta::NameValue(nv) = meta
        && let Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) = &nv.value
        && let Ok(path) = s.parse::<syn::Path>()
    {
        cx.error(
            s,
            format_args!(
                "name the function without quotes: `{} = {}`",
                key(meta),
                quote::quote!(#path).to_string().replace(' ', "")
            ),
        );
        return None;
    }
    cx.error(
        meta,
        format_args!(
            "write `{} = function_name`, naming a `fn(&Caller, &T) -> ephaptic::Audience`",
            key(meta)
        ),
    );
    None
}
