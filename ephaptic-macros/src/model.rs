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
    /// `(calls, seconds)`.
    pub rate_limit: Option<(u32, u32)>,
    /// Calls with an idempotency key run once per key.
    pub idempotent: bool,
}

pub const EXPOSE_KEYS: &[&str] = &[
    "name = \"...\"",
    "requires_login",
    "idempotent",
    "rate_limit = \"10/m\"",
    "broadcast = [\"channel\", ...]",
    "broadcast_to = audience_fn",
];

impl ExposeArgs {
    pub fn parse(cx: &mut Ctxt, metas: &[syn::Meta]) -> Self {
        let mut name = Once::new("name");
        let mut requires_login = Once::new("requires_login");
        let mut broadcast = Once::new("broadcast");
        let mut broadcast_to = Once::new("broadcast_to");
        let mut rate_limit = Once::new("rate_limit");
        let mut idempotent = Once::new("idempotent");
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
                "idempotent" => {
                    if let Some(v) = parse::flag(cx, meta) {
                        idempotent.set(cx, meta, v);
                    }
                }
                "rate_limit" => {
                    if let Some(v) = parse::string(cx, meta) {
                        match parse_rate(&v.value()) {
                            Some(rate) => rate_limit.set(cx, meta, rate),
                            None => cx.error(
                                &v,
                                "write the limit as calls per unit: \"10/s\", \"100/m\", \"1000/h\" or \"5000/d\" (calls at least 1)",
                            ),
                        }
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
            rate_limit: rate_limit.get(),
            idempotent: idempotent.get().unwrap_or(false),
        }
    }
}

/// `"2/m"` -> `(2, 60)`.
fn parse_rate(text: &str) -> Option<(u32, u32)> {
    let (calls, unit) = text.split_once('/')?;
    let calls: u32 = calls.trim().parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return None,
    };
    Some((calls, seconds))
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
    /// `default`: write `impl Default` even when some fields have no `#[ephaptic(default)]`.
    pub default: Option<syn::Meta>,
    /// `recover = "stream" | "latest" | "none"`: the `Recover` variant's name.
    pub recover: Option<&'static str>,
}

pub const EVENT_KEYS: &[&str] = &[
    "name = \"...\"",
    "default",
    "recover = \"stream\" | \"latest\" | \"none\"",
];

impl EventArgs {
    pub fn parse(cx: &mut Ctxt, metas: &[syn::Meta]) -> Self {
        let mut name = Once::new("name");
        let mut default = Once::new("default");
        let mut recover = Once::new("recover");
        for meta in metas {
            match parse::key(meta).as_str() {
                "name" => {
                    if let Some(v) = parse::string(cx, meta) {
                        name.set(cx, meta, v);
                    }
                }
                "recover" => {
                    if let Some(v) = parse::string(cx, meta) {
                        let variant = match v.value().as_str() {
                            "stream" => Some("Stream"),
                            "latest" => Some("Latest"),
                            "none" => Some("None"),
                            _ => None,
                        };
                        match variant {
                            Some(variant) => recover.set(cx, meta, variant),
                            None => cx.error(
                                &v,
                                "`recover` is one of \"stream\" (replayed to a client that missed it, the default), \"latest\" (only the newest of this event is replayed) or \"none\" (never kept nor replayed)",
                            ),
                        }
                    }
                }
                "default" => {
                    if let Some(true) = parse::flag(cx, meta) {
                        default.set(cx, meta, meta.clone());
                    }
                }
                _ => parse::unknown(cx, "event", meta, EVENT_KEYS),
            }
        }
        EventArgs {
            name: name.get(),
            default: default.get(),
            recover: recover.get(),
        }
    }
}

/// `#[model(...)]` options.
pub struct ModelArgs {
    /// As for events: write `impl Default` even when some fields have no default of ours.
    pub default: Option<syn::Meta>,
}

pub const MODEL_KEYS: &[&str] = &["default"];

impl ModelArgs {
    pub fn parse(cx: &mut Ctxt, metas: &[syn::Meta]) -> Self {
        let mut default = Once::new("default");
        for meta in metas {
            match parse::key(meta).as_str() {
                "default" => {
                    if let Some(true) = parse::flag(cx, meta) {
                        default.set(cx, meta, meta.clone());
                    }
                }
                _ => parse::unknown(cx, "model", meta, MODEL_KEYS),
            }
        }
        ModelArgs {
            default: default.get(),
        }
    }
}

/// `#[ephaptic(...)]` options on a field of an `#[event]` or `#[model]` struct.
pub const FIELD_KEYS: &[&str] = &["default", "default = <expression>"];

/// A field's `#[ephaptic(default ..)]`: the wire default, the `Default` impl's value and the
/// `@default` line of its TypeScript docs, in one place.
pub struct FieldDefault<'a> {
    pub field: &'a syn::Field,
    pub ident: &'a Ident,
    /// `None` for a bare `default`: the field type's `Default::default()`.
    pub value: Option<syn::Expr>,
    /// The `#[ephaptic(..)]` attribute, for errors about the field's default as a whole.
    pub attr: &'a syn::Attribute,
}

/// What `#[ephaptic(..)]` says about a data type's fields.
pub struct Fields<'a> {
    pub defaults: Vec<FieldDefault<'a>>,
    /// Whether every named field has a default of ours (and there is at least one field).
    pub all_defaulted: bool,
}

/// Reads every field's `#[ephaptic(..)]`. Only struct fields take one: on an enum variant's
/// field it is reported (the codegen strips it either way, so the item still compiles).
pub fn fields<'a>(cx: &mut Ctxt, item: &'a syn::DeriveInput, attr: &str) -> Fields<'a> {
    let mut out = Fields {
        defaults: Vec::new(),
        all_defaulted: false,
    };
    match &item.data {
        syn::Data::Struct(data) => {
            let mut named = 0;
            for field in &data.fields {
                let Some(ident) = &field.ident else {
                    for a in ephaptic_attrs(&field.attrs) {
                        cx.error(a, "`#[ephaptic(..)]` goes on named fields");
                    }
                    continue;
                };
                named += 1;
                let mut default = Once::new("default");
                for a in ephaptic_attrs(&field.attrs) {
                    for meta in field_metas(cx, a) {
                        match parse::key(&meta).as_str() {
                            "default" => match &meta {
                                syn::Meta::Path(_) => default.set(cx, &meta, (a, None)),
                                syn::Meta::NameValue(nv) => {
                                    default.set(cx, &meta, (a, Some(nv.value.clone())))
                                }
                                syn::Meta::List(_) => cx.error(
                                    &meta,
                                    "write `default = <expression>` (e.g. `default = 1`), or a bare `default` for the type's `Default`",
                                ),
                            },
                            _ => parse::unknown(cx, "ephaptic", &meta, FIELD_KEYS),
                        }
                    }
                }
                if let Some((attr, value)) = default.get() {
                    out.defaults.push(FieldDefault {
                        field,
                        ident,
                        value,
                        attr,
                    });
                }
            }
            out.all_defaulted = named > 0 && out.defaults.len() == named;
        }
        syn::Data::Enum(data) => {
            for a in data
                .variants
                .iter()
                .flat_map(|v| &v.fields)
                .flat_map(|f| ephaptic_attrs(&f.attrs))
            {
                cx.error(
                    a,
                    format_args!("`#[ephaptic(..)]` goes on the fields of a struct; on an enum's variants, use serde's `#[serde(default = \"path::to_fn\")]`, or make the variant a struct of its own with `#[ephaptic::{attr}]`"),
                );
            }
        }
        syn::Data::Union(_) => {}
    }
    out
}

/// The `#[ephaptic(..)]` attributes among a field's attributes.
pub fn ephaptic_attrs(attrs: &[syn::Attribute]) -> impl Iterator<Item = &syn::Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("ephaptic"))
}

/// The options of one `#[ephaptic(..)]`; a bare `#[ephaptic]` or unparsable options are
/// reported and give none.
fn field_metas(cx: &mut Ctxt, attr: &syn::Attribute) -> Vec<syn::Meta> {
    match &attr.meta {
        syn::Meta::List(list) => match parse::metas(list.tokens.clone()) {
            Ok(metas) => metas,
            Err(e) => {
                cx.push(e);
                Vec::new()
            }
        },
        _ => {
            cx.error(
                attr,
                "write `#[ephaptic(default = <expression>)]`, e.g. `#[ephaptic(default = 1)]`",
            );
            Vec::new()
        }
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
pub fn is_caller(ty: &Type) -> bool {
    is_named(ty, "Caller")
}

/// An identity loader's parameter whose type is `Handshake` (any path ending in `Handshake`)
/// is the upgrade request, not the client's `auth`.
pub fn is_handshake(ty: &Type) -> bool {
    is_named(ty, "Handshake")
}

fn is_named(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(tp) => {
            tp.qself.is_none()
                && tp
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == name && s.arguments.is_none())
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

/// What serde lets a client leave out of a struct (`default`, `Option`) or not send at all
/// (`skip`, `skip_deserializing`), by wire name: the input shape of a model.
pub struct InputShape {
    pub optional: Vec<String>,
    pub omit: Vec<String>,
}

pub fn input_shape(item: &syn::DeriveInput) -> InputShape {
    let mut shape = InputShape {
        optional: Vec::new(),
        omit: Vec::new(),
    };
    let syn::Data::Struct(data) = &item.data else {
        return shape;
    };
    let container = serde_attrs(&item.attrs);
    for field in &data.fields {
        let Some(ident) = &field.ident else { continue };
        let attrs = serde_attrs(&field.attrs);
        if attrs.flatten {
            continue;
        }
        let raw = ident.to_string().trim_start_matches("r#").to_string();
        let name = attrs
            .rename
            .clone()
            .unwrap_or_else(|| rename(&raw, container.rename_all.as_deref()));
        if attrs.skip {
            continue;
        }
        if attrs.skip_deserializing {
            shape.omit.push(name);
        } else if attrs.default
            || container.default
            || (is_option(&field.ty) && !attrs.deserialize_with)
        {
            shape.optional.push(name);
        }
    }
    shape
}

#[derive(Default)]
struct SerdeAttrs {
    rename: Option<String>,
    rename_all: Option<String>,
    default: bool,
    skip: bool,
    skip_deserializing: bool,
    flatten: bool,
    deserialize_with: bool,
}

/// The serde attributes that shape what a client may send. `rename(deserialize = "..")` and
/// `rename_all(deserialize = "..")` win over the plain forms, as in serde.
fn serde_attrs(attrs: &[syn::Attribute]) -> SerdeAttrs {
    let mut out = SerdeAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let value = if meta.input.peek(syn::Token![=]) {
                let lit: syn::Lit = meta.value()?.parse()?;
                match lit {
                    syn::Lit::Str(s) => Some(s.value()),
                    _ => None,
                }
            } else if meta.input.peek(syn::token::Paren) {
                let mut de = None;
                meta.parse_nested_meta(|inner| {
                    let lit: syn::LitStr = inner.value()?.parse()?;
                    if inner.path.is_ident("deserialize") {
                        de = Some(lit.value());
                    }
                    Ok(())
                })?;
                if de.is_none() {
                    return Ok(());
                }
                de
            } else {
                None
            };
            match key.as_str() {
                "rename" => out.rename = value,
                "rename_all" => out.rename_all = value,
                "default" => out.default = true,
                "skip" => out.skip = true,
                "skip_deserializing" => out.skip_deserializing = true,
                "flatten" => out.flatten = true,
                "deserialize_with" | "with" => out.deserialize_with = true,
                _ => {}
            }
            Ok(())
        });
    }
    out
}

/// The options of a `#[serde(..)]` attribute, or `None` when they are not `Meta`-shaped (then
/// serde reports them itself).
pub fn serde_metas(attr: &syn::Attribute) -> Option<Vec<syn::Meta>> {
    match &attr.meta {
        syn::Meta::List(list) if attr.path().is_ident("serde") => {
            parse::metas(list.tokens.clone()).ok()
        }
        _ => None,
    }
}

/// A `default = ..` inside `#[serde(..)]` that serde cannot use (a value that is not a string,
/// or a string that is not a path), with the expression to suggest for `#[ephaptic(default)]`.
/// serde reports it as one error and then derives nothing, so everything that needs `Serialize`
/// fails after it; we report it ourselves and leave it out of the item.
pub fn bad_serde_default(meta: &syn::Meta) -> Option<(&syn::Expr, String)> {
    let syn::Meta::NameValue(nv) = meta else {
        return None;
    };
    if !nv.path.is_ident("default") {
        return None;
    }
    match &nv.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => match s.parse::<syn::ExprPath>() {
            Ok(_) => None,
            // `"1"` was meant as the value `1`; text that is no expression, as a string.
            Err(_) => match s.parse::<syn::Expr>() {
                Ok(_) => Some((&nv.value, s.value())),
                Err(_) => Some((&nv.value, quote::quote!(#s).to_string())),
            },
        },
        other => Some((other, expr_text(other))),
    }
}

/// An expression as the user wrote it (for the TypeScript docs and error messages): the source
/// text where there is one, else the tokens with rustfmt-like spacing for the common cases.
pub fn expr_text(expr: &syn::Expr) -> String {
    use quote::ToTokens;
    use syn::spanned::Spanned;
    if let Some(text) = expr.span().source_text() {
        return text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let mut text = expr.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" ::", "::"),
        (" (", "("),
        ("( ", "("),
        (" )", ")"),
        (" [", "["),
        ("[ ", "["),
        (" ]", "]"),
        (" ,", ","),
        (" .", "."),
        (". ", "."),
        (" !", "!"),
    ] {
        text = text.replace(from, to);
    }
    match text.strip_prefix("- ") {
        Some(rest) => format!("-{rest}"),
        None => text,
    }
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option")
        }
        _ => false,
    }
}

/// serde's `rename_all` for a snake_case field name.
fn rename(field: &str, rule: Option<&str>) -> String {
    let words: Vec<&str> = field.split('_').filter(|w| !w.is_empty()).collect();
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    match rule {
        Some("lowercase") => field.to_lowercase(),
        Some("UPPERCASE") => field.to_uppercase(),
        Some("PascalCase") => words.iter().map(|w| cap(w)).collect(),
        Some("camelCase") => words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_string() } else { cap(w) })
            .collect(),
        Some("SCREAMING_SNAKE_CASE") => field.to_uppercase(),
        Some("kebab-case") => field.replace('_', "-"),
        Some("SCREAMING-KEBAB-CASE") => field.to_uppercase().replace('_', "-"),
        _ => field.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_rules_match_serde() {
        assert_eq!(rename("is_error", Some("camelCase")), "isError");
        assert_eq!(rename("is_error", Some("PascalCase")), "IsError");
        assert_eq!(rename("is_error", Some("kebab-case")), "is-error");
        assert_eq!(rename("is_error", Some("SCREAMING-KEBAB-CASE")), "IS-ERROR");
        assert_eq!(rename("is_error", None), "is_error");
    }

    #[test]
    fn input_shape_reads_defaults_options_and_skips() {
        let item: syn::DeriveInput = syn::parse_quote! {
            #[serde(rename_all = "camelCase")]
            struct S {
                id: u64,
                #[serde(default)] is_error: bool,
                when: Option<String>,
                #[serde(rename = "x")] renamed: Option<u8>,
                #[serde(skip_deserializing)] server_only: u8,
                #[serde(skip)] hidden: u8,
            }
        };
        let shape = input_shape(&item);
        assert_eq!(shape.optional, ["isError", "when", "x"]);
        assert_eq!(shape.omit, ["serverOnly"]);
    }

    #[test]
    fn serde_defaults_serde_cannot_use_are_found_with_a_suggestion() {
        let bad = |meta: syn::Meta| bad_serde_default(&meta).map(|(_, s)| s);
        assert_eq!(bad(syn::parse_quote!(default = 1)).as_deref(), Some("1"));
        assert_eq!(bad(syn::parse_quote!(default = "1")).as_deref(), Some("1"));
        assert_eq!(
            bad(syn::parse_quote!(default = "not a path")).as_deref(),
            Some("\"not a path\"")
        );
        assert_eq!(bad(syn::parse_quote!(default = "one")), None);
        assert_eq!(bad(syn::parse_quote!(default = "a::b")), None);
        assert_eq!(bad(syn::parse_quote!(default)), None);
    }

    #[test]
    fn expressions_print_as_written_without_source_text() {
        let text = |e: syn::Expr| expr_text(&e);
        assert_eq!(text(syn::parse_quote!(-1)), "-1");
        assert_eq!(text(syn::parse_quote!(Vec::new())), "Vec::new()");
        assert_eq!(text(syn::parse_quote!(vec![1, 2])), "vec![1, 2]");
        assert_eq!(text(syn::parse_quote!("x")), "\"x\"");
    }
}
