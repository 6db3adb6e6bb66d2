//! The records the macros write: one `const`-built definition per exposed function, event,
//! error type and identity loader, submitted to `inventory` so items are found at start-up
//! wherever they are defined, with no list to maintain.

use std::fmt;

use super::bind::CallSig;
pub use super::request::BoxFuture;
use super::request::{Request, Started};

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
    /// A call that carries an idempotency key runs at most once per key within the server's
    /// window; a repeat gets the first call's answer (`#[expose(idempotent)]`).
    pub idempotent: bool,
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
            idempotent: false,
            signature: crate::schema::Signature::new,
            handler,
        }
    }

    /// What binding a call of it needs.
    #[inline]
    pub(crate) fn call_sig(&self) -> CallSig {
        CallSig {
            name: self.name,
            params: self.params,
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

    /// Marks the function as idempotent: calls with a key run once per key.
    pub const fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
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
/// the client sent none, or sent no `init`) and the upgrade request, and resolves to the
/// identity, `None` for anonymous, or an error text.
pub type LoaderFn = fn(
    Option<bytes::Bytes>,
    crate::handshake::Handshake,
) -> BoxFuture<Result<Option<super::grant::Grant>, String>>;

/// An identity loader declared with `#[ephaptic::identity_loader]`.
#[derive(Debug)]
pub struct LoaderDef {
    /// Where the loader is defined.
    pub site: Site,
    /// The generated entry point.
    pub load: LoaderFn,
}

/// The naming rule a build declares with [`naming!`](crate::naming).
#[derive(Debug)]
pub struct NamingDef {
    /// The rule.
    pub naming: Naming,
    /// Where it is declared.
    pub site: Site,
}

/// One registration submitted by the macros.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Registration {
    Function(&'static FunctionDef),
    Event(&'static EventDef),
    Error(&'static ErrorDef),
    Loader(&'static LoaderDef),
    Naming(&'static NamingDef),
}

inventory::collect!(Registration);

/// Implemented by the hidden handle type `#[expose]` generates beside each function (a struct
/// with the function's name), so that a function can be registered explicitly with
/// [`Server::register`](crate::Server::register) where link-time registration does not run.
pub trait Exposed {
    /// The function's record.
    fn def() -> &'static FunctionDef;
}

/// How functions without an explicit `name = "..."` are named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Naming {
    /// The Rust name (`create_todo`). The default.
    #[default]
    AsWritten,
    /// camelCase (`create_todo` is called as `createTodo`), which reads naturally in
    /// TypeScript. Declare it once for the build with [`naming!`](crate::naming)
    /// (`ephaptic::naming!(CamelCase);`): servers and the TypeScript export both read it.
    CamelCase,
}

// Its rules (`apply`, `rename`) live with the registry that applies them: `registry/naming.rs`.
