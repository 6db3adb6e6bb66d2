//! A build's functions, events and errors as data, for the TypeScript export run from outside
//! the binary (`cargo ephaptic export`).
//!
//! The exporter (`ephaptic-ts`) depends on this crate, so the server cannot call it. Instead,
//! when the environment variable [`ENV`] (`EPHAPTIC_EXPORT`) names a file, a server writes a
//! [`Description`] of what it would serve there and exits, at the point it would start serving
//! ([`Server::serve`](crate::Server::serve), [`serve`](crate::serve),
//! [`Server::router`](crate::Server::router) and the like), before binding its address. The
//! description holds the TypeScript of every type already (ts-rs runs here, in the binary that
//! has the types), so the exporter only arranges text: it renders `schema.ts` from the
//! description exactly as it does in-process, under the server's own naming rule.
//!
//! The encoding is MessagePack with named fields; [`FORMAT`] changes when it does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ts_rs::Config;

use crate::Introspection;
use crate::schema::{Declaration, Declarations, Shape, TypeInfo};

/// The environment variable that asks a server to write its [`Description`] to the file it
/// names and exit instead of serving.
pub const ENV: &str = "EPHAPTIC_EXPORT";

/// The TypeScript type of 64- and 128-bit integers in the description (`number` when unset,
/// as `ephaptic_ts::Exporter` defaults to), as `ephaptic_ts::Exporter::large_int` sets it.
pub const ENV_LARGE_INT: &str = "EPHAPTIC_EXPORT_LARGE_INT";

/// The version of the encoding: a reader refuses another one.
pub const FORMAT: u32 = 1;

/// Everything the TypeScript export needs, with each type's TypeScript already written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Description<'a> {
    /// [`FORMAT`] of the writer.
    pub format: u32,
    /// The `ephaptic` version of the writer.
    pub ephaptic_version: &'a str,
    /// The binary that wrote it (for messages).
    pub binary: String,
    /// The naming rule the wire names follow (`AsWritten`, `CamelCase`).
    pub naming: String,
    /// Exposed functions, by wire name.
    #[serde(borrow)]
    pub functions: Vec<FunctionDesc<'a>>,
    /// Events, by name.
    #[serde(borrow)]
    pub events: Vec<EventDesc<'a>>,
    /// Declared errors, by code.
    #[serde(borrow)]
    pub errors: Vec<ErrorDesc<'a>>,
    /// Channels, by name, with the wire names of the functions that announce on each.
    #[serde(borrow)]
    pub channels: Vec<(&'a str, Vec<&'a str>)>,
    /// Every TypeScript declaration the types above use, by identifier.
    pub declarations: BTreeMap<String, Declaration>,
    /// [`schema_hash`] of what it describes (empty from writers before it existed).
    #[serde(default)]
    pub schema_hash: String,
}

/// One exposed function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDesc<'a> {
    /// What it is.
    #[serde(borrow)]
    pub def: FunctionMeta<'a>,
    /// What it takes and answers.
    #[serde(borrow)]
    pub sig: SignatureDesc<'a>,
}

/// A function's name and documentation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionMeta<'a> {
    /// The wire name.
    pub name: &'a str,
    /// The Rust doc comment.
    pub doc: &'a str,
    /// Whether anonymous callers are refused.
    pub requires_login: bool,
    /// Whether calls with an idempotency key run once per key (`#[expose(idempotent)]`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// A function's parameters and answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureDesc<'a> {
    /// Wire parameters in order.
    #[serde(borrow)]
    pub params: Vec<ParamDesc<'a>>,
    /// Value or stream.
    pub shape: Shape,
    /// The result type, or the stream's item type.
    #[serde(borrow)]
    pub output: TypeDesc<'a>,
}

/// One wire parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamDesc<'a> {
    /// The keyword name.
    pub name: &'a str,
    /// Its type.
    #[serde(borrow)]
    pub ty: TypeDesc<'a>,
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDesc<'a> {
    /// The wire name.
    pub name: &'a str,
    /// The Rust doc comment.
    pub doc: &'a str,
    /// The payload.
    #[serde(borrow)]
    pub ty: TypeDesc<'a>,
}

/// One declared error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDesc<'a> {
    /// The wire code.
    pub code: &'a str,
    /// The default message.
    pub message: &'a str,
    /// The Rust doc comment.
    pub doc: &'a str,
    /// The type of its `data`.
    #[serde(borrow)]
    pub data: TypeDesc<'a>,
}

/// How one Rust type appears in TypeScript.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeDesc<'a> {
    /// `std::any::type_name` of the Rust type.
    pub rust_name: &'a str,
    /// The TypeScript type expression; `None` when the type has no TypeScript description.
    pub ts: Option<String>,
    /// Whether it is an `Option`.
    pub is_option: bool,
    /// Fields a client may omit (model types).
    #[serde(borrow)]
    pub input_optional: Vec<&'a str>,
    /// Fields a client cannot send (model types).
    #[serde(borrow)]
    pub input_omit: Vec<&'a str>,
}

impl TypeDesc<'static> {
    fn new(cfg: &Config, ty: &TypeInfo, decls: &mut Declarations) -> Self {
        ty.collect(cfg, decls);
        TypeDesc {
            rust_name: ty.rust_name,
            ts: ty.is_described().then(|| ty.ts_name(cfg)),
            is_option: ty.is_option(),
            input_optional: ty.input_optional.to_vec(),
            input_omit: ty.input_omit.to_vec(),
        }
    }
}

impl TypeDesc<'_> {
    /// Whether ts-rs describes this type (otherwise it is `unknown`).
    pub fn is_described(&self) -> bool {
        self.ts.is_some()
    }

    /// Whether the type is an `Option`.
    pub fn is_option(&self) -> bool {
        self.is_option
    }

    /// Whether arguments of this type have a different shape from results of it.
    pub fn has_input_shape(&self) -> bool {
        !self.input_optional.is_empty() || !self.input_omit.is_empty()
    }

    /// The TypeScript type expression (`unknown` for a type without a description).
    pub fn ts_name(&self) -> String {
        self.ts.clone().unwrap_or_else(|| "unknown".into())
    }
}

impl Description<'static> {
    /// Describes `intro` with the TypeScript settings `cfg`.
    pub fn new(cfg: &Config, intro: &Introspection) -> Self {
        let mut desc = Self::describe(cfg, intro);
        desc.schema_hash = schema_hash(intro);
        desc
    }

    fn describe(cfg: &Config, intro: &Introspection) -> Self {
        let mut decls = Declarations::default();
        let functions = intro
            .functions
            .iter()
            .map(|def| {
                let sig = (def.signature)();
                FunctionDesc {
                    def: FunctionMeta {
                        name: def.name,
                        doc: def.doc,
                        requires_login: def.requires_login,
                        idempotent: def.idempotent,
                    },
                    sig: SignatureDesc {
                        params: sig
                            .params
                            .iter()
                            .map(|p| ParamDesc {
                                name: p.name,
                                ty: TypeDesc::new(cfg, &p.ty, &mut decls),
                            })
                            .collect(),
                        shape: sig.shape,
                        output: TypeDesc::new(cfg, &sig.output, &mut decls),
                    },
                }
            })
            .collect();
        let events = intro
            .events
            .iter()
            .map(|e| EventDesc {
                name: e.name,
                doc: e.doc,
                ty: TypeDesc::new(cfg, &(e.ty)(), &mut decls),
            })
            .collect();
        let errors = intro
            .errors
            .iter()
            .map(|e| ErrorDesc {
                code: e.code,
                message: e.message,
                doc: e.doc,
                data: TypeDesc::new(cfg, &(e.data)(), &mut decls),
            })
            .collect();
        let channels = intro
            .channels
            .iter()
            .map(|(name, fns)| (*name, fns.iter().map(|f| f.name).collect()))
            .collect();
        Description {
            format: FORMAT,
            ephaptic_version: env!("CARGO_PKG_VERSION"),
            binary: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "this binary".into()),
            naming: format!("{:?}", intro.naming),
            functions,
            events,
            errors,
            channels,
            declarations: decls.items,
            schema_hash: String::new(),
        }
    }
}

/// The hash of what `intro` serves as a client sees it (docs/PROTOCOL.md 5.6): 16 hex digits
/// that change when a function, a parameter, a type, an event, an error or a channel does, and
/// not for documentation. The server sends it in the hello; `cargo ephaptic export` writes the
/// same into `schema.ts` as `ephapticSchemaHash` (both from [`Description::schema_hash`]).
pub fn schema_hash(intro: &Introspection) -> String {
    let cfg = Config::new().with_large_int("number".to_owned());
    Description::describe(&cfg, intro).hash()
}

impl<'a> Description<'a> {
    /// The hash of this description as it is (the schema hash is this, of the description
    /// with 64-bit integers as `number`, so the server and the exporter agree whatever the
    /// exporter's settings).
    fn hash(&self) -> String {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.str(&self.naming);
        let ts = |h: &mut Fnv, t: &TypeDesc<'_>| {
            h.str(t.ts.as_deref().unwrap_or("?"));
            h.str(if t.is_option { "?" } else { "!" });
            for f in t.input_optional.iter().chain(&t.input_omit) {
                h.str(f);
            }
        };
        let mut functions: Vec<_> = self.functions.iter().collect();
        functions.sort_by_key(|f| f.def.name);
        for f in functions {
            h.str("fn");
            h.str(f.def.name);
            h.str(if f.def.requires_login { "login" } else { "" });
            for p in &f.sig.params {
                h.str(p.name);
                ts(&mut h, &p.ty);
            }
            h.str(&format!("{:?}", f.sig.shape));
            ts(&mut h, &f.sig.output);
        }
        let mut events: Vec<_> = self.events.iter().collect();
        events.sort_by_key(|e| e.name);
        for e in events {
            h.str("event");
            h.str(e.name);
            ts(&mut h, &e.ty);
        }
        let mut errors: Vec<_> = self.errors.iter().collect();
        errors.sort_by_key(|e| e.code);
        for e in errors {
            h.str("error");
            h.str(e.code);
            ts(&mut h, &e.data);
        }
        let mut channels = self.channels.clone();
        channels.sort();
        for (name, fns) in &channels {
            h.str("channel");
            h.str(name);
            for f in fns {
                h.str(f);
            }
        }
        for (id, d) in &self.declarations {
            h.str(id);
            h.str(&d.decl);
        }
        format!("{:016x}", h.0)
    }

    /// The encoded description.
    pub fn to_bytes(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a description always encodes")
    }

    /// Reads an encoded description, refusing one of another [`FORMAT`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
            ephaptic_version: String,
        }
        let head: Head = rmp_serde::from_slice(bytes)
            .map_err(|e| format!("not an ephaptic description: {e}"))?;
        if head.format != FORMAT {
            return Err(format!(
                "the description was written by ephaptic {} (format {}), and this exporter reads format {FORMAT} (ephaptic {}): build the exporter from the same ephaptic version as the server",
                head.ephaptic_version,
                head.format,
                env!("CARGO_PKG_VERSION")
            ));
        }
        rmp_serde::from_slice(bytes).map_err(|e| format!("a malformed ephaptic description: {e}"))
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, which the hash must be.
struct Fnv(u64);

impl Fnv {
    fn str(&mut self, s: &str) {
        for b in s.bytes().chain([0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// When [`ENV`] is set: writes what a server would serve (`introspect`: its declarations) to
/// the file it names and exits the process (status 0, or 2 with the reason on stderr). Does
/// nothing otherwise. (It takes the server's introspection rather than the server, so that this
/// module stays below the builder.)
pub(crate) fn if_requested(
    introspect: impl FnOnce() -> Result<crate::Introspection, crate::RegistryError>,
) {
    let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let written = introspect()
        .map_err(|e| format!("the declarations conflict:\n{e}"))
        .and_then(|intro| {
            let large_int = std::env::var(ENV_LARGE_INT).ok().filter(|t| !t.is_empty());
            let cfg = Config::new().with_large_int(large_int.unwrap_or_else(|| "number".into()));
            let bytes = Description::new(&cfg, &intro).to_bytes();
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
        });
    match written {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("ephaptic: the export ({ENV}) failed: {e}");
            std::process::exit(2);
        }
    }
}
