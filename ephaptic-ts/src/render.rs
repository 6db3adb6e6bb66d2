//! Writing `schema.ts`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use ephaptic::Introspection;
use ephaptic::export::{Description, SignatureDesc, TypeDesc};
use ephaptic::schema::{Declaration, Shape};
use ephaptic::ts_rs::Config;

use crate::Error;
use crate::text::json_string;

/// Configures and runs the export.
#[derive(Debug, Clone)]
pub struct Exporter {
    large_int: String,
    naming: Option<ephaptic::Naming>,
    server: Option<std::sync::Arc<ephaptic::Server>>,
    allow_unknown: bool,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter {
    /// The defaults: 64-bit integers as `number` (see the crate docs).
    pub fn new() -> Self {
        Exporter {
            large_int: "number".into(),
            naming: None,
            server: None,
            allow_unknown: false,
        }
    }

    /// Exports exactly what `server` serves: its naming rule and its explicitly registered
    /// functions, so the schema cannot disagree with the server.
    ///
    /// ```
    /// # #[ephaptic::expose]
    /// # async fn ping() -> bool { true }
    /// fn server() -> ephaptic::Server {
    ///     ephaptic::Server::new().rename_all(ephaptic::Naming::CamelCase)
    /// }
    /// // main: server().serve(addr); the schema test:
    /// let ts = ephaptic_ts::Exporter::new().server(server()).render().unwrap();
    /// ```
    pub fn server(mut self, server: ephaptic::Server) -> Self {
        self.server = Some(std::sync::Arc::new(server));
        self
    }

    /// The TypeScript type for 64- and 128-bit integers: `"number"` (default) or
    /// `"number | bigint"` for a client created with `{ bigint: true }`.
    pub fn large_int(mut self, ty: &str) -> Self {
        self.large_int = ty.into();
        self
    }

    /// The naming rule the server uses (`Server::rename_all`); both must agree, so prefer
    /// declaring it once with `ephaptic::naming!(..)`, which the exporter reads by itself, or
    /// [`server`](Self::server), which takes it from the server.
    pub fn rename_all(mut self, naming: ephaptic::Naming) -> Self {
        self.naming = Some(naming);
        self
    }

    /// Exports types without a TypeScript description as `unknown` instead of failing (see
    /// "Types typed `unknown`" in the crate docs). Off by default.
    pub fn allow_unknown(mut self, yes: bool) -> Self {
        self.allow_unknown = yes;
        self
    }

    fn introspect(&self) -> Result<Introspection, Error> {
        let intro = match (&self.server, self.naming) {
            (Some(server), _) => server.introspect(),
            (None, Some(naming)) => ephaptic::Server::new().rename_all(naming).introspect(),
            (None, None) => ephaptic::Server::new().introspect(),
        };
        intro.map_err(Error::Registry)
    }

    /// What the export of this build would contain, refused when it is empty or has types
    /// typed `unknown` that are not allowed (see the crate docs).
    fn describe(&self) -> Result<Description<'static>, Error> {
        let desc = Description::new(&self.config(), &self.introspect()?);
        crate::verify(&desc, self.allow_unknown)?;
        Ok(desc)
    }

    fn config(&self) -> Config {
        Config::new().with_large_int(self.large_int.clone())
    }

    /// The schema of this build's registrations.
    ///
    /// Fails when nothing is registered (the crate defining the functions is not linked into
    /// this binary) and when a type would be typed `unknown` (unless
    /// [`allow_unknown`](Self::allow_unknown)); the messages say how to fix it.
    pub fn render(&self) -> Result<String, Error> {
        Ok(self.render_description(&self.describe()?))
    }

    /// Writes the schema to `path` (creating parent directories).
    pub fn export_to(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let text = self.render()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.into(), e))?;
        }
        std::fs::write(path, text).map_err(|e| Error::Io(path.into(), e))
    }

    /// Compares `path` with a fresh export; with `EPHAPTIC_TS_UPDATE=1`, writes it instead.
    ///
    /// When `path` does not exist yet, writes it and still fails ([`Error::Created`]), so that
    /// a CI run cannot pass on a file nobody committed.
    pub fn check(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        if std::env::var_os("EPHAPTIC_TS_UPDATE").is_some_and(|v| v != "0") {
            return self.export_to(path);
        }
        let fresh = self.render()?;
        crate::compare(path, &fresh)
    }

    /// The JSON document the existing ephaptic generator reads (see the crate docs).
    pub fn json_schema(&self) -> Result<String, Error> {
        let intro = self.introspect()?;
        Ok(crate::json::schema(&self.config(), &intro))
    }

    /// The schema of `intro`, as it is (no checks).
    pub fn render_for(&self, intro: &Introspection) -> String {
        self.render_description(&Description::new(&self.config(), intro))
    }

    /// The schema of a description (what `cargo ephaptic export` reads from a server), as it
    /// is (no checks; see [`verify`](crate::verify)).
    pub fn render_description(&self, desc: &Description<'_>) -> String {
        let functions = &desc.functions;
        let decls = &desc.declarations;

        // Types without a TypeScript description, named in the header.
        let mut unknown = BTreeSet::new();
        crate::each_type(desc, |ty, _| {
            if !ty.is_described() && ty.rust_name != "()" {
                unknown.insert(ty.rust_name);
            }
        });
        let events: Vec<_> = desc.events.iter().map(|e| (e, &e.ty)).collect();
        let errors: Vec<_> = desc.errors.iter().map(|e| (e, &e.data)).collect();

        // Argument shapes that differ from result shapes: `ItemInput` beside `Item`.
        let mut inputs: BTreeMap<String, String> = BTreeMap::new();
        for f in functions {
            for p in &f.sig.params {
                if let Some((name, decl)) = input_shape(&p.ty, decls) {
                    inputs.insert(name, decl);
                }
            }
        }

        let mut out = String::new();
        out.push_str(
            "// Generated by ephaptic-ts from the Rust types. Do not edit by hand: regenerate it\n\
             // with `cargo ephaptic export <this file>`, or the project's export step (e.g.\n\
             // `EPHAPTIC_TS_UPDATE=1 cargo test`).\n\
             /* eslint-disable */\n",
        );
        if !unknown.is_empty() {
            out.push_str(
                "//\n// These Rust types have no TypeScript description and are typed `unknown`\n",
            );
            out.push_str("// (derive it with #[ephaptic::model] to type them):\n");
            for u in &unknown {
                let _ = writeln!(out, "//   {u}");
            }
        }
        out.push('\n');

        for decl in decls.values() {
            if let Some(docs) = &decl.docs {
                // ts-rs hands docs over already as a JSDoc block.
                let docs = unlink(docs.trim());
                if docs.starts_with("/**") {
                    let _ = writeln!(out, "{docs}");
                } else {
                    out.push_str(&jsdoc(&docs, ""));
                }
            }
            let _ = writeln!(out, "export {}\n", decl.decl.trim_end());
        }
        if !inputs.is_empty() {
            out.push_str(
                "/** Spells an argument shape out as one object type (for hovers and errors). */\n\
                 type EphapticFlatten<T> = { [K in keyof T]: T[K] } & {};\n\n",
            );
        }
        for decl in inputs.values() {
            let _ = writeln!(out, "{decl}\n");
        }

        // Events and channels.
        out.push_str(
            "/** Every event and channel clients can listen for, with its payload type. */\n",
        );
        out.push_str("export interface EphapticEvents {\n");
        let mut entries: BTreeMap<&str, (String, String)> = BTreeMap::new();
        for (e, ty) in &events {
            entries.insert(e.name, (ty.ts_name(), e.doc.to_string()));
        }
        for (channel, fns) in &desc.channels {
            let mut types: Vec<String> = Vec::new();
            for name in fns {
                let f = functions
                    .iter()
                    .find(|f| f.def.name == *name)
                    .expect("channel function is registered");
                let t = f.sig.output.ts_name();
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            let names: Vec<_> = fns.iter().map(|f| format!("`{f}`")).collect();
            let doc = format!(
                "Channel: announced by {} after it succeeds.",
                names.join(", ")
            );
            entries.insert(channel, (types.join(" | "), doc));
        }
        for (name, (ty, doc)) in &entries {
            if !doc.is_empty() {
                out.push_str(&jsdoc(doc, "  "));
            }
            let _ = writeln!(out, "  {}: {ty};", quote(name));
        }
        out.push_str("}\n\n");

        // Declared errors.
        out.push_str("/** Application error codes, with the type of each one's `data`. */\n");
        out.push_str("export interface EphapticErrors {\n");
        for (e, ty) in &errors {
            let mut doc = e.message.to_string();
            if !e.doc.is_empty() {
                doc = format!("{}\n\nMessage: {}", e.doc, e.message);
            }
            out.push_str(&jsdoc(&doc, "  "));
            let _ = writeln!(out, "  {}: {};", quote(e.code), ty.ts_name());
        }
        out.push_str("}\n\n");

        // TanStack Query helpers.
        out.push_str(
            "/** `client.queries.<fn>(...args)`: `{ queryKey, queryFn }` for TanStack Query. */\n",
        );
        out.push_str("export interface EphapticQueries {\n");
        for f in functions
            .iter()
            .filter(|f| !NOT_PROXIED.contains(&f.def.name))
        {
            let params = params(&f.sig, &inputs);
            let key_types: Vec<String> = params
                .iter()
                .map(|p| {
                    if p.optional {
                        format!("({})?", p.ty)
                    } else {
                        p.ty.clone()
                    }
                })
                .collect();
            let output = f.sig.output.ts_name();
            let resolved = match f.sig.shape {
                Shape::Value => output,
                Shape::Stream => format!("Array<{output}>"),
            };
            let _ = writeln!(
                out,
                "  {}({}): {{ queryKey: readonly [{}{}]; queryFn: () => Promise<{resolved}> }};",
                method_name(f.def.name),
                render_params(&params),
                json_string(f.def.name),
                key_types
                    .iter()
                    .map(|t| format!(", {t}"))
                    .collect::<String>(),
            );
        }
        out.push_str("}\n\n");

        // TanStack mutation helpers for the functions that announce channels.
        let mut channels_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (channel, announcers) in &desc.channels {
            for f in announcers {
                channels_of.entry(f).or_default().push(channel);
            }
        }
        let announcing: Vec<(&ephaptic::export::FunctionDesc<'_>, &Vec<&str>)> = functions
            .iter()
            .filter(|f| !NOT_PROXIED.contains(&f.def.name))
            .filter_map(|f| channels_of.get(f.def.name).map(|c| (f, c)))
            .collect();
        out.push_str(
            "/**\n \
             * `client.mutations.<fn>()`: options for TanStack Query's `useMutation`, for the functions that\n \
             * announce channels. `variables` is the function's argument (none for no parameters, a tuple for\n \
             * several); `onSuccess` invalidates the queries `client.invalidateOn` ties to its channels.\n \
             */\n",
        );
        out.push_str("export interface EphapticMutations {\n");
        for (f, announced) in &announcing {
            let params = params(&f.sig, &inputs);
            let variables = match params.as_slice() {
                [] => "variables: void".to_string(),
                [p] => format!("variables{}: {}", if p.optional { "?" } else { "" }, p.ty),
                _ => format!("variables: readonly [{}]", render_params(&params)),
            };
            let output = f.sig.output.ts_name();
            let ret = match f.sig.shape {
                Shape::Value => format!("Promise<{output}>"),
                Shape::Stream => format!("Promise<AsyncIterableIterator<{output}>>"),
            };
            let channels: Vec<String> = announced.iter().map(|c| json_string(c)).collect();
            let listed: Vec<String> = announced.iter().map(|c| format!("`{c}`")).collect();
            out.push_str(&jsdoc(&format!("Announces {}.", listed.join(", ")), "  "));
            let _ = writeln!(
                out,
                "  {}(): {{ mutationKey: readonly [{}]; mutationFn: ({variables}) => {ret}; onSuccess: () => Promise<void>; channels: readonly [{}] }};",
                method_name(f.def.name),
                json_string(f.def.name),
                channels.join(", "),
            );
        }
        out.push_str("}\n\n");
        out.push_str(
            "/**\n \
             * What `client.mutations` needs at run time: each function's parameter count and channels.\n \
             * Pass it to `connect({ url, mutations: ephapticMutations })`.\n \
             */\n",
        );
        if announcing.is_empty() {
            out.push_str(
                "export const ephapticMutations: { readonly [name: string]: { readonly params: number; readonly channels: readonly string[] } } = {};\n\n",
            );
        } else {
            out.push_str("export const ephapticMutations = {\n");
            for (f, announced) in &announcing {
                let channels: Vec<String> = announced.iter().map(|c| json_string(c)).collect();
                let _ = writeln!(
                    out,
                    "  {}: {{ params: {}, channels: [{}] }},",
                    quote(f.def.name),
                    f.sig.params.len(),
                    channels.join(", ")
                );
            }
            out.push_str("} as const;\n\n");
        }
        let idempotent: Vec<String> = functions
            .iter()
            // A stream is not kept by the server (each call runs its own): its calls are not
            // sent again after a drop, so it is not listed.
            .filter(|f| f.def.idempotent && f.sig.shape == Shape::Value)
            .map(|f| json_string(f.def.name))
            .collect();
        if !idempotent.is_empty() {
            out.push_str(
                "/**\n \
                 * The functions declared `#[expose(idempotent)]`: the client sends their calls with an idempotency\n \
                 * key and sends them again after a reconnect, and the server runs each once. Pass it to\n \
                 * `connect({ url, idempotent: ephapticIdempotent })`.\n \
                 */\n",
            );
            let _ = writeln!(
                out,
                "export const ephapticIdempotent = [{}] as const;\n",
                idempotent.join(", ")
            );
        }
        if !desc.schema_hash.is_empty() {
            out.push_str(
                "/**\n \
                 * The hash of the server's functions and types this file was generated from. Pass it to\n \
                 * `connect({ url, schemaHash: ephapticSchemaHash })`: a client whose bundle is older than the\n \
                 * server it reaches is told so (`onSchemaMismatch`).\n \
                 */\n",
            );
            let _ = writeln!(
                out,
                "export const ephapticSchemaHash = {};\n",
                json_string(&desc.schema_hash)
            );
        }

        // The service.
        out.push_str("/** The server's functions, events and queries, as `@ephaptic/client` exposes them. */\n");
        out.push_str("export interface EphapticService {\n");
        for f in functions {
            if CLIENT_MEMBERS.contains(&f.def.name) || NOT_PROXIED.contains(&f.def.name) {
                // The client's own member wins at run time; typing it as the function would lie.
                let _ = writeln!(
                    out,
                    "  // `{}` clashes with a client member: call it as `client.call(\"{}\", ...)`.",
                    f.def.name, f.def.name
                );
                continue;
            }
            let params = params(&f.sig, &inputs);
            let output = f.sig.output.ts_name();
            let ret = match f.sig.shape {
                Shape::Value => format!("Promise<{output}>"),
                Shape::Stream => format!("Promise<AsyncIterableIterator<{output}>>"),
            };
            let mut doc = f.def.doc.to_string();
            if f.def.requires_login && !doc.to_ascii_lowercase().contains("requires login") {
                doc.push_str(if doc.is_empty() {
                    "Requires login."
                } else {
                    "\n\nRequires login."
                });
            }
            if !doc.is_empty() {
                out.push_str(&jsdoc(&doc, "  "));
            }
            let _ = writeln!(
                out,
                "  {}({}): {ret};",
                method_name(f.def.name),
                render_params(&params)
            );
        }
        out.push_str(
            "  /** Listens for an event or channel; returns a function that stops listening. */\n  \
             on<K extends keyof EphapticEvents>(event: K, callback: (data: EphapticEvents[K]) => void): () => void;\n  \
             /** Stops listening (also cancels a `once` of the same callback). */\n  \
             off<K extends keyof EphapticEvents>(event: K, callback: (data: EphapticEvents[K]) => void): void;\n  \
             /** Listens for the next occurrence only; returns a function that stops listening. */\n  \
             once<K extends keyof EphapticEvents>(event: K, callback: (data: EphapticEvents[K]) => void): () => void;\n  \
             /** TanStack Query helpers. */\n  \
             queries: EphapticQueries;\n  \
             /** TanStack mutation helpers for the functions that announce channels. */\n  \
             mutations: EphapticMutations;\n",
        );
        out.push_str("}\n");
        out
    }
}

struct RenderedParam {
    name: String,
    ty: String,
    optional: bool,
}

/// The parameters as TypeScript: argument shapes for models, trailing `Option`s optional.
fn params(sig: &SignatureDesc<'_>, inputs: &BTreeMap<String, String>) -> Vec<RenderedParam> {
    let mut out: Vec<RenderedParam> = sig
        .params
        .iter()
        .map(|p| {
            let mut ty = p.ty.ts_name();
            if p.ty.has_input_shape() && inputs.contains_key(&format!("{ty}Input")) {
                ty = format!("{ty}Input");
            }
            RenderedParam {
                name: param_name(p.name),
                ty,
                optional: false,
            }
        })
        .collect();
    // Only trailing optional parameters can be left out of a positional call.
    for (p, info) in out.iter_mut().zip(&sig.params).rev() {
        if !info.ty.is_option() {
            break;
        }
        p.optional = true;
    }
    out
}

fn render_params(params: &[RenderedParam]) -> String {
    params
        .iter()
        .map(|p| format!("{}{}: {}", p.name, if p.optional { "?" } else { "" }, p.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `type ItemInput = ...` for a model type whose argument shape differs, if `ty` is a plain
/// declared type.
fn input_shape(
    ty: &TypeDesc<'_>,
    decls: &BTreeMap<String, Declaration>,
) -> Option<(String, String)> {
    if !ty.has_input_shape() {
        return None;
    }
    let name = ty.ts_name();
    if !decls.contains_key(&name) {
        return None;
    }
    let input = format!("{name}Input");
    let keys = |fields: &[&str]| {
        fields
            .iter()
            .map(|f| json_string(f))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let optional: Vec<&str> = ty
        .input_optional
        .iter()
        .copied()
        .filter(|f| !ty.input_omit.contains(f))
        .collect();
    let mut removed: Vec<&str> = optional.clone();
    removed.extend(ty.input_omit.iter().copied());
    let mut decl = format!(
        "/** `{name}` as an argument: the fields the server fills in when absent are optional. */\n"
    );
    // Wrapped in `EphapticFlatten` so hovers and errors show the fields, not `Omit<...>`.
    let _ = write!(
        decl,
        "export type {input} = EphapticFlatten<Omit<{name}, {}>",
        keys(&removed)
    );
    if !optional.is_empty() {
        let _ = write!(decl, " & Partial<Pick<{name}, {}>>", keys(&optional));
    }
    decl.push_str(">;");
    Some((input, decl))
}

fn jsdoc(text: &str, indent: &str) -> String {
    let text = unlink(text.trim()).replace("*/", "*\\/");
    if !text.contains('\n') {
        return format!("{indent}/** {text} */\n");
    }
    let mut out = format!("{indent}/**\n");
    for line in text.lines() {
        if line.is_empty() {
            out.push_str(&format!("{indent} *\n"));
        } else {
            out.push_str(&format!("{indent} * {line}\n"));
        }
    }
    out.push_str(&format!("{indent} */\n"));
    out
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

/// A property key (an event name, an error code), always quoted as a JSON string, identifier or
/// not: TypeScript accepts any string literal as a key.
fn quote(name: &str) -> String {
    json_string(name)
}

/// A method name: bare when it is an identifier, quoted otherwise.
fn method_name(name: &str) -> String {
    if is_identifier(name) {
        name.to_string()
    } else {
        json_string(name)
    }
}

/// Members of `@ephaptic/client`'s client object: a function with one of these names is only
/// reachable through `client.call(name, ...)`. A test checks this is exactly the members of
/// `ClientBase` in `client/src/types.ts`.
const CLIENT_MEMBERS: &[&str] = &[
    "call",
    "disconnect",
    "identity",
    "invalidateOn",
    "isError",
    "mutations",
    "off",
    "on",
    "onResync",
    "onSchemaMismatch",
    "onSessionEnded",
    "onStateChange",
    "once",
    "presence",
    "queries",
    "ready",
    "session",
    "sessionEnded",
    "state",
    "then",
    "url",
    "withOptions",
];

/// Names the client's proxy never turns into calls (`NOT_PROXIED` in `client/src/names.ts`): names
/// tools probe on any object, and `Object.prototype`'s, which every object has. A function with one
/// of these names is only reachable through `client.call(name, ...)`. A test checks this list
/// against that file.
const NOT_PROXIED: &[&str] = &[
    "$$typeof",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "__proto__",
    "asymmetricMatch",
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "nodeType",
    "propertyIsEnumerable",
    "tagName",
    "then",
    "toJSON",
    "toLocaleString",
    "toString",
    "valueOf",
];

/// Words TypeScript does not allow as parameter names.
const RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "await",
    "arguments",
    "eval",
];

fn param_name(name: &str) -> String {
    if RESERVED.contains(&name) {
        format!("{name}_")
    } else {
        name.to_string()
    }
}

/// Rustdoc's intra-doc links mean nothing in TypeScript: `[`Presence`]` becomes `` `Presence` ``
/// and `[Presence]` becomes `Presence`; links with a target (`[text](url)`) are kept, and so is
/// everything inside a code span (`` `to([1, 2, 3])` ``, `` `ids[0]` ``) and every bracket
/// whose text is not a Rust path (`to([1, 2, 3])`: rustdoc leaves those as text too).
fn unlink(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // The next code span (a run of backticks up to the same run) or bracket, whichever is first.
        let tick = rest.find('`');
        let bracket = rest.find('[');
        match (tick, bracket) {
            (Some(t), b) if b.is_none_or(|b| t < b) => {
                out.push_str(&rest[..t]);
                let run = rest[t..].len() - rest[t..].trim_start_matches('`').len();
                let fence = &rest[t..t + run];
                let inner = &rest[t + run..];
                match find_closing_run(inner, run) {
                    Some(end) => {
                        out.push_str(fence);
                        out.push_str(&inner[..end + run]);
                        rest = &inner[end + run..];
                    }
                    None => {
                        // An unclosed run is literal backticks, not a span.
                        out.push_str(fence);
                        rest = inner;
                    }
                }
            }
            (_, Some(start)) => {
                out.push_str(&rest[..start]);
                let after = &rest[start + 1..];
                // A link's text may be a code span (`[`Presence`]`), whose brackets do not count.
                match link_text_end(after) {
                    Some(end)
                        if !after[end + 1..].starts_with('(') && is_link_text(&after[..end]) =>
                    {
                        // Without rustdoc's disambiguator (`fn@to` is `to`).
                        let text = &after[..end];
                        let text = match text.split_once('@') {
                            Some((_, path)) if !text.starts_with('`') => path,
                            _ => text,
                        };
                        out.push_str(text);
                        rest = &after[end + 1..];
                    }
                    _ => {
                        out.push('[');
                        rest = after;
                    }
                }
            }
            (None, None) => {
                out.push_str(rest);
                rest = "";
            }
            (Some(_), None) => unreachable!("covered by the first arm"),
        }
    }
    out
}

/// Whether a bracket's text is what an intra-doc link names: one code span, or a Rust path
/// (`Presence`, `crate::Server::serve`, `to()`, `to!`, `fn@to`).
fn is_link_text(text: &str) -> bool {
    let text = text.trim();
    if text.len() >= 2 && text.starts_with('`') && text.ends_with('`') {
        return true;
    }
    let path = text.split_once('@').map_or(text, |(_, p)| p);
    let path = path
        .strip_suffix("()")
        .or_else(|| path.strip_suffix('!'))
        .unwrap_or(path);
    !path.is_empty()
        && path.split("::").all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Where a run of exactly `run` backticks starts in `text` (the end of a code span opened by one).
fn find_closing_run(text: &str, run: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let len = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if len == run {
                return Some(i);
            }
            i += len;
        } else {
            i += 1;
        }
    }
    None
}

/// The `]` that closes a link text starting at `text`: the first one outside code spans, if no
/// `[` comes before it.
fn link_text_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => {
                let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
                i = match find_closing_run(&text[i + run..], run) {
                    Some(end) => i + run + end + run,
                    None => i + run,
                };
            }
            b'[' => return None,
            b']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{CLIENT_MEMBERS, NOT_PROXIED};

    fn is_word(c: char) -> bool {
        c.is_alphanumeric() || c == '_' || c == '$'
    }

    /// `source` without comments and with the insides of string literals dropped, so that neither
    /// can hold a bracket or a `;` that counts.
    fn code_only(source: &str) -> String {
        let mut out = String::with_capacity(source.len());
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            if let Some(gap) = skip_comment(c, &mut chars) {
                out.push(gap);
                continue;
            }
            match c {
                '"' | '\'' | '`' => {
                    let mut escaped = false;
                    for d in chars.by_ref() {
                        if escaped {
                            escaped = false;
                        } else if d == '\\' {
                            escaped = true;
                        } else if d == c {
                            break;
                        }
                    }
                    out.push(c);
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }

    /// Skips the comment that `c` (just taken from `chars`) starts, if it does: returns what
    /// stands in its place (a line break for `//`, a space for `/* */`).
    fn skip_comment(c: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
        if c != '/' {
            return None;
        }
        match chars.peek() {
            Some('/') => {
                chars.by_ref().find(|&c| c == '\n');
                Some('\n')
            }
            Some('*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                Some(' ')
            }
            _ => None,
        }
    }

    /// The member names of `interface <name>` in TypeScript source, in order, each once (an
    /// overload repeats a name). Just enough TypeScript for a hand-written interface: comments and
    /// strings are skipped, a member ends at a `;` outside brackets, and its name is its first word
    /// after an optional `readonly`.
    fn interface_members(source: &str, name: &str) -> Result<Vec<String>, String> {
        let code = code_only(source);
        let head = format!("interface {name}");
        let after_name = code
            .match_indices(&head)
            .map(|(i, _)| i + head.len())
            .find(|&i| !code[i..].starts_with(is_word))
            .ok_or_else(|| format!("found no `interface {name}`"))?;
        // The body opens at the first `{` outside the type parameters (`<S = Untyped, Errs = {}>`).
        let mut depth = 0usize;
        let mut prev = ' ';
        let mut body = None;
        for (i, c) in code[after_name..].char_indices() {
            match c {
                '{' if depth == 0 => {
                    body = Some(after_name + i + 1);
                    break;
                }
                '<' | '(' | '[' | '{' => depth += 1,
                '>' if prev == '=' => {} // an arrow, `=>`
                '>' | ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        let body = body.ok_or_else(|| format!("`interface {name}` has no body"))?;

        let mut members: Vec<String> = Vec::new();
        let mut add = |member: &str| -> Result<(), String> {
            let member = member.trim();
            if member.is_empty() {
                return Ok(());
            }
            let rest = member
                .strip_prefix("readonly ")
                .map_or(member, str::trim_start);
            let word: String = rest.chars().take_while(|&c| is_word(c)).collect();
            if word.is_empty() {
                return Err(format!(
                    "cannot read the name of the member `{member}` of `{name}`"
                ));
            }
            if !members.contains(&word) {
                members.push(word);
            }
            Ok(())
        };
        let mut depth = 0usize;
        let mut member = String::new();
        for c in code[body..].chars() {
            match c {
                '}' if depth == 0 => {
                    add(&member)?;
                    return Ok(members);
                }
                ';' if depth == 0 => {
                    add(&member)?;
                    member.clear();
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            member.push(c);
        }
        Err(format!("`interface {name}` is not closed"))
    }

    #[test]
    fn client_members_are_the_ts_clients_own_members() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/client/src/types.ts");
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let declared =
            interface_members(&source, "ClientBase").unwrap_or_else(|e| panic!("{path}: {e}"));
        let missing: Vec<&str> = declared
            .iter()
            .map(String::as_str)
            .filter(|m| !CLIENT_MEMBERS.contains(m))
            .collect();
        let extra: Vec<&str> = CLIENT_MEMBERS
            .iter()
            .copied()
            .filter(|m| !declared.iter().any(|d| d == m))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "CLIENT_MEMBERS (ephaptic-ts/src/render.rs) must list exactly the members of \
             `ClientBase` in {path}.\n  missing from CLIENT_MEMBERS: {missing:?}\n  \
             in CLIENT_MEMBERS but not in ClientBase: {extra:?}"
        );
    }

    /// The string literals of TypeScript source, comments skipped (no escapes inside: enough for a
    /// list of names).
    fn string_literals(source: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            if skip_comment(c, &mut chars).is_none() && c == '"' {
                out.push(chars.by_ref().take_while(|&d| d != '"').collect());
            }
        }
        out
    }

    #[test]
    fn not_proxied_is_the_ts_clients_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/client/src/names.ts");
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut declared = string_literals(&source);
        declared.sort();
        declared.dedup();
        let mut ours: Vec<String> = NOT_PROXIED.iter().map(|s| s.to_string()).collect();
        ours.sort();
        assert_eq!(
            ours, declared,
            "NOT_PROXIED (ephaptic-ts/src/render.rs) must list exactly the names in {path}"
        );
    }

    #[test]
    fn interface_members_sees_past_comments_strings_generics_and_overloads() {
        let ts = r#"
            /** Not this one: interface ClientBase { inComment: 1 } */
            export interface ClientBaseX { wrong: number }
            // interface ClientBase { commented: 1 }
            export interface ClientBase<S = {}, F = () => void> extends Other<S> {
              /** A doc with a ; and a { brace. */
              readonly state: "a;b" | '}' | `{`;
              call<K extends keyof S>(name: K, ...args: unknown[]): Promise<{ a: 1; b: 2 }>;
              call(name: string): Promise<unknown>; // an overload
              on(event: string, callback: (data: unknown) => void): void;
              readonly then?: undefined;
              last: number
            }
            interface After { after: 1 }
        "#;
        assert_eq!(
            interface_members(ts, "ClientBase").unwrap(),
            ["state", "call", "on", "then", "last"]
        );
        assert!(interface_members(ts, "Missing").is_err());
        assert!(interface_members("interface ClientBase { (): void; }", "ClientBase").is_err());
    }

    #[test]
    fn intra_doc_links_become_plain_code() {
        assert_eq!(
            super::unlink("Sends [`Presence`] to [Everyone]."),
            "Sends `Presence` to Everyone."
        );
        assert_eq!(
            super::unlink("See [the docs](https://x.test)."),
            "See [the docs](https://x.test)."
        );
    }

    #[test]
    fn code_spans_keep_their_brackets() {
        let cases = [
            ("Send with `to([1, 2, 3])`.", "Send with `to([1, 2, 3])`."),
            ("The first is `ids[0]`.", "The first is `ids[0]`."),
            ("``a ` [b] ``, then [c].", "``a ` [b] ``, then c."),
            (
                "[`Presence`] and `x[1]` and [Everyone]",
                "`Presence` and `x[1]` and Everyone",
            ),
            ("[`a[0]`] is a link", "`a[0]` is a link"),
            ("an unclosed ` then [x]", "an unclosed ` then x"),
            ("`[a](b)` stays", "`[a](b)` stays"),
            ("nested [a [b] c]", "nested [a b c]"),
            // Brackets that are not a link's text stay, as rustdoc leaves them.
            ("to([1, 2, 3]) reaches three", "to([1, 2, 3]) reaches three"),
            ("ids[0] and [a, b]", "ids[0] and [a, b]"),
            (
                "[crate::Server::serve] and [to()] and [fn@to]",
                "crate::Server::serve and to() and to",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(super::unlink(input), expected, "{input}");
        }
    }
}
