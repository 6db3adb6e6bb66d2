//! What the application declared: exposed functions, error types, the identity loader.
//!
//! The macros write one `const`-built record per item and hand it to `inventory`, so items are
//! found at start-up wherever they are defined, with no list to maintain. The records are read
//! once into a [`Registry`] (a map by wire name) when a server is built.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::dispatch::{Request, Started};
use crate::identity::Identity;

/// A boxed, sendable future; what generated shims return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where an item was declared, for start-up errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// The item's Rust name.
    pub rust_name: &'static str,
    /// `module_path!()` at the item.
    pub module: &'static str,
    /// `file!()` at the item.
    pub file: &'static str,
    /// `line!()` at the item.
    pub line: u32,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}::{} ({}:{})",
            self.module, self.rust_name, self.file, self.line
        )
    }
}

/// The generated entry point of an exposed function: binds the arguments of a call, runs the
/// function and encodes its outcome.
pub type Handler = fn(&Request<'_>) -> Started;

/// An exposed function, as `#[ephaptic::expose]` records it.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDef {
    /// The wire name clients call.
    pub name: &'static str,
    /// Where the function is defined.
    pub site: Site,
    /// Whether the name was given with `name = "..."` (then no renaming rule applies).
    pub explicit_name: bool,
    /// The names of the parameters that come from the wire, in order.
    pub params: &'static [&'static str],
    /// Whether anonymous callers are refused with `UNAUTHORIZED`.
    pub requires_login: bool,
    /// At most this many calls per this many seconds, per caller (`rate_limit = "2/m"`).
    pub rate_limit: Option<(u32, u32)>,
    /// The Rust doc comment, carried into generated TypeScript.
    pub doc: &'static str,
    /// Channels announced with the function's `Ok` value (`#[expose(broadcast = [..])]`).
    pub channels: &'static [&'static str],
    /// Describes parameters and answer for the TypeScript export.
    pub signature: fn() -> crate::schema::Signature,
    /// The generated entry point.
    pub handler: Handler,
}

impl FunctionDef {
    /// Starts a record; the macro fills in the rest with the `const` setters below.
    pub const fn new(name: &'static str, site: Site, handler: Handler) -> Self {
        FunctionDef {
            name,
            site,
            explicit_name: false,
            params: &[],
            requires_login: false,
            rate_limit: None,
            doc: "",
            channels: &[],
            signature: crate::schema::Signature::new,
            handler,
        }
    }

    /// Marks the name as given explicitly.
    pub const fn explicit_name(mut self, yes: bool) -> Self {
        self.explicit_name = yes;
        self
    }

    /// Sets the wire parameter names.
    pub const fn params(mut self, params: &'static [&'static str]) -> Self {
        self.params = params;
        self
    }

    /// Marks the function as requiring an authenticated caller.
    pub const fn requires_login(mut self, yes: bool) -> Self {
        self.requires_login = yes;
        self
    }

    /// Sets the channels the function announces its result on.
    pub const fn channels(mut self, channels: &'static [&'static str]) -> Self {
        self.channels = channels;
        self
    }

    /// Sets the signature description used by the TypeScript export.
    pub const fn signature(mut self, signature: fn() -> crate::schema::Signature) -> Self {
        self.signature = signature;
        self
    }

    /// Limits calls to `calls` per `seconds`, per caller.
    pub const fn rate_limit(mut self, calls: u32, seconds: u32) -> Self {
        self.rate_limit = Some((calls, seconds));
        self
    }

    /// Sets the documentation carried over from the Rust doc comments.
    pub const fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }
}

/// An error type declared with `#[ephaptic::error]`.
#[derive(Debug)]
pub struct ErrorDef {
    /// The wire code.
    pub code: &'static str,
    /// The default message.
    pub message: &'static str,
    /// Where the type is defined.
    pub site: Site,
    /// The Rust doc comment.
    pub doc: &'static str,
    /// Describes the error's `data` for the TypeScript export (`null` for unit structs).
    pub data: fn() -> crate::schema::TypeInfo,
}

/// An event type declared with `#[ephaptic::event]`.
#[derive(Debug)]
pub struct EventDef {
    /// The wire name clients listen for.
    pub name: &'static str,
    /// Where the type is defined.
    pub site: Site,
    /// The Rust doc comment.
    pub doc: &'static str,
    /// Describes the event's payload for the TypeScript export.
    pub ty: fn() -> crate::schema::TypeInfo,
}

/// The generated entry point of an identity loader: takes the encoded `auth` value (absent when
/// the client sent none) and resolves to the identity, `None` for anonymous, or an error text.
pub type LoaderFn = fn(Option<bytes::Bytes>) -> BoxFuture<Result<Option<Identity>, String>>;

/// An identity loader declared with `#[ephaptic::identity_loader]`.
#[derive(Debug)]
pub struct LoaderDef {
    /// Where the loader is defined.
    pub site: Site,
    /// The generated entry point.
    pub load: LoaderFn,
}

/// One registration submitted by the macros.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Registration {
    Function(&'static FunctionDef),
    Event(&'static EventDef),
    Error(&'static ErrorDef),
    Loader(&'static LoaderDef),
}

inventory::collect!(Registration);

/// Implemented by the hidden handle type `#[expose]` generates beside each function (a struct
/// with the function's name), so that a function can be registered explicitly with
/// [`Server::register`](crate::Server::register) where link-time registration does not run.
pub trait Exposed {
    /// The function's record.
    fn def() -> &'static FunctionDef;
}

/// Every exposed function a server serves, by wire name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub functions: HashMap<&'static str, &'static FunctionDef>,
    pub errors: HashMap<&'static str, &'static ErrorDef>,
    pub events: HashMap<&'static str, &'static EventDef>,
    /// Channel name -> the functions that announce on it.
    pub channels: HashMap<&'static str, Vec<&'static FunctionDef>>,
    pub loader: Option<&'static LoaderDef>,
}

/// Why the declared items cannot be served together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError(pub(crate) Vec<String>);

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for RegistryError {}

impl Registry {
    /// Reads every link-time registration plus the explicit ones. Duplicates are collected,
    /// not stopped at, so one start-up names every conflict.
    pub fn build(explicit: &[&'static FunctionDef], naming: Naming) -> Result<Self, RegistryError> {
        let mut reg = Registry::default();
        let mut problems = Vec::new();
        let submitted = inventory::iter::<Registration>.into_iter().copied();
        for item in submitted.chain(explicit.iter().map(|f| Registration::Function(f))) {
            match item {
                Registration::Function(f) => match reg.functions.get(naming.apply(f).as_ref()) {
                    // The same definition met twice (linked, and registered explicitly).
                    Some(prev) if prev.site == f.site => {}
                    Some(prev) => problems.push(format!(
                        "two exposed functions are named '{}': {} and {}; rename one with #[expose(name = \"...\")]",
                        f.name, prev.site, f.site
                    )),
                    None => {
                        let f = naming.rename(f);
                        reg.functions.insert(f.name, f);
                    }
                },
                Registration::Event(e) => match reg.events.get(e.name) {
                    Some(prev) if std::ptr::eq(*prev, e) => {}
                    Some(prev) => problems.push(format!(
                        "two events are named '{}': {} and {}; rename one with #[event(name = \"...\")]",
                        e.name, prev.site, e.site
                    )),
                    None => {
                        reg.events.insert(e.name, e);
                    }
                },
                Registration::Error(e) => match reg.errors.get(e.code) {
                    Some(prev) if std::ptr::eq(*prev, e) => {}
                    Some(prev) => problems.push(format!(
                        "two error types declare the code '{}': {} and {}; give one a different code",
                        e.code, prev.site, e.site
                    )),
                    None => {
                        reg.errors.insert(e.code, e);
                    }
                },
                Registration::Loader(l) => match reg.loader {
                    Some(prev) if std::ptr::eq(prev, l) => {}
                    Some(prev) => problems.push(format!(
                        "two identity loaders are declared: {} and {}; keep one",
                        prev.site, l.site
                    )),
                    None => reg.loader = Some(l),
                },
            }
        }
        for f in reg.functions.values() {
            for channel in f.channels {
                reg.channels.entry(channel).or_default().push(f);
            }
        }
        for (channel, fns) in &reg.channels {
            if let Some(event) = reg.events.get(channel) {
                problems.push(format!(
                    "'{channel}' is both an event ({}) and a channel announced by {}; clients could not tell their payloads apart, so rename one",
                    event.site, fns[0].site
                ));
            }
        }
        if problems.is_empty() {
            Ok(reg)
        } else {
            Err(RegistryError(problems))
        }
    }
}

/// Everything a build declares, for tools such as the TypeScript exporter: read from the same
/// registrations a server serves, sorted by name.
#[derive(Debug)]
pub struct Introspection {
    /// Exposed functions, by wire name.
    pub functions: Vec<&'static FunctionDef>,
    /// Events, by name.
    pub events: Vec<&'static EventDef>,
    /// Declared error types, by code.
    pub errors: Vec<&'static ErrorDef>,
    /// Channels, by name, with the functions that announce on each.
    pub channels: Vec<(&'static str, Vec<&'static FunctionDef>)>,
}

impl Registry {
    pub(crate) fn introspect(&self) -> Introspection {
        let mut functions: Vec<_> = self.functions.values().copied().collect();
        functions.sort_by_key(|f| f.name);
        let mut events: Vec<_> = self.events.values().copied().collect();
        events.sort_by_key(|e| e.name);
        let mut errors: Vec<_> = self.errors.values().copied().collect();
        errors.sort_by_key(|e| e.code);
        let mut channels: Vec<_> = self
            .channels
            .iter()
            .map(|(name, fns)| {
                let mut fns = fns.clone();
                fns.sort_by_key(|f| f.name);
                (*name, fns)
            })
            .collect();
        channels.sort_by_key(|(name, _)| *name);
        Introspection {
            functions,
            events,
            errors,
            channels,
        }
    }
}

/// What this build declares (link-time registrations), or the conflicts that would stop a
/// server from starting.
pub fn introspect() -> Result<Introspection, RegistryError> {
    crate::Server::new().introspect()
}

/// How functions without an explicit `name = "..."` are named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Naming {
    /// The Rust name (`create_todo`). The default.
    #[default]
    AsWritten,
    /// camelCase (`create_todo` is called as `createTodo`), which reads naturally in
    /// TypeScript. Set it on the [`Server`](crate::Server) and on the TypeScript exporter alike.
    CamelCase,
}

impl Naming {
    /// The wire name of `f` under this rule.
    pub fn apply(self, f: &FunctionDef) -> std::borrow::Cow<'static, str> {
        match self {
            Naming::CamelCase if !f.explicit_name => camel_case(f.name).into(),
            _ => f.name.into(),
        }
    }

    /// `f` under its wire name; a renamed record is created once per server build.
    fn rename(self, f: &'static FunctionDef) -> &'static FunctionDef {
        match self.apply(f) {
            std::borrow::Cow::Borrowed(_) => f,
            std::borrow::Cow::Owned(name) => Box::leak(Box::new(FunctionDef {
                name: Box::leak(name.into_boxed_str()),
                ..*f
            })),
        }
    }
}

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for (i, c) in name.trim_start_matches('_').chars().enumerate() {
        if c == '_' {
            upper = i > 0;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn camel_case_joins_snake_words() {
        assert_eq!(super::camel_case("create_todo"), "createTodo");
        assert_eq!(super::camel_case("add"), "add");
        assert_eq!(super::camel_case("get_user_by_id"), "getUserById");
    }
}
