//! # ephaptic-ts
//!
//! Turns what a Rust ephaptic server declares into the TypeScript a frontend imports: one
//! self-contained `schema.ts` with every type its functions, events, channels and errors use
//! (described by [ts-rs](https://docs.rs/ts-rs)), plus `EphapticService`, `EphapticEvents`,
//! `EphapticErrors` and `EphapticQueries` for the `@ephaptic/client` package.
//!
//! ```ts
//! import { connect } from "@ephaptic/client";
//! import type { EphapticService, EphapticErrors } from "./schema";
//!
//! const client = await connect<EphapticService, EphapticErrors>({ url: "/_ephaptic" });
//! const sum: number = await client.add(1, 2);
//! client.on("todoCreated", (todo) => console.log(todo.title));
//! ```
//!
//! ## Running the export
//!
//! **One command, any crate shape** (a bin-only crate whose `main.rs` just calls
//! `ephaptic::serve` included):
//!
//! ```text
//! cargo install --path ephaptic-ts                  # once: gives `cargo ephaptic`
//! cargo ephaptic export web/src/schema.ts           # write it
//! cargo ephaptic export web/src/schema.ts --watch   # and again on every change
//! cargo ephaptic export web/src/schema.ts --check   # CI: fail with a diff when stale
//! ```
//!
//! It runs `cargo run` of your server binary with `EPHAPTIC_EXPORT` set: at the point the server
//! would start serving (`ephaptic::serve`, `Server::serve`, `Server::router`, before binding its
//! address), it writes what it serves (see `ephaptic::export`) and exits, and the command renders
//! `schema.ts` from that. So the schema is what that binary serves, under its own naming rule,
//! and nothing needs a library target or a test. Options: `--bin`, `-p`, `--manifest-path`,
//! `--features`, `--release`, `--allow-unknown`, `--large-int TYPE`, and `-- args` for your
//! binary (`cargo ephaptic export --help`). `main` must reach the server without side effects
//! that matter, as it does in the usual `main`.
//!
//! **From a test** (CI fails when the checked-in file is stale; the functions must be in a
//! library target the test can link):
//!
//! ```no_run
//! // tests/schema.rs. Link the crate that defines the functions: without this line the test
//! // binary has none, and the check fails saying so.
//! // use my_app as _;
//!
//! #[test]
//! fn schema_ts_is_current() {
//!     ephaptic_ts::check(concat!(env!("CARGO_MANIFEST_DIR"), "/web/src/schema.ts")).unwrap();
//! }
//! ```
//! `.unwrap()` prints the readable message: a stale file shows a line diff, and a file that does
//! not exist yet is written and the test fails once, asking you to commit it. Run with
//! `EPHAPTIC_TS_UPDATE=1 cargo test` to (re)write the file instead of comparing.
//!
//! **Naming.** Declare the rule once, `ephaptic::naming!(CamelCase);`, next to your functions:
//! the server, the command and `check` all read it. A server's own `Server::rename_all` overrides
//! it for that server; the command sees that too, and a test sees it through
//! [`Exporter::server`].
//!
//! ## Loud failures
//!
//! The export refuses to write a schema that would mislead ([`verify`]):
//!
//! - **Nothing registered**: no exposed functions and no events in the binary the export ran in.
//!   The linker drops a crate that nothing references, so functions in another crate (your
//!   library target) need `use my_app as _;` (or a call into it) where the export runs.
//! - **Types typed `unknown`**: a type with no TypeScript description, such as a struct with only
//!   `#[derive(Serialize, Deserialize)]`. Derive it with `#[ephaptic::model]` instead. Dynamic
//!   values are `unknown` on purpose and allowed: `ephaptic::Value` and `serde_json::Value`,
//!   alone or inside standard containers (`Vec<Value>`, `Option<Value>`,
//!   `HashMap<String, Value>`). To accept the others as `unknown`:
//!   [`Exporter::allow_unknown`]`(true)`, or `--allow-unknown`. The file's header names every
//!   type exported as `unknown` either way.
//!
//! [`render`], [`export_to`] and [`check`] (and the `Exporter` methods of those names) apply these
//! checks; [`Exporter::render_for`] and [`Exporter::json_schema`] do not.
//!
//! ## Types
//!
//! Types reach TypeScript through ts-rs. `#[ephaptic::event]`, `#[ephaptic::error]` and
//! `#[ephaptic::model]` derive it; `#[ephaptic::model]` also records which fields a client may
//! leave out (serde `default`, `Option`), so an argument of type `Item` is exported as
//! `ItemInput` (those fields optional) while results and events use `Item` (all present). A type
//! with no TypeScript description (such as `ephaptic::Value`) is exported as `unknown`, and the
//! file says which (see "Loud failures" for when that fails the export).
//!
//! **64-bit integers** (`i64`, `u64`, `i128`, `u128`) are exported as `number`, because the
//! `@ephaptic/client` delivers every integer as a JS `number` and refuses, with
//! `PROTOCOL_ERROR`, an integer it cannot represent exactly (beyond 2^53). A client created with
//! `{ bigint: true }` delivers such integers as `bigint`; export for it with
//! [`Exporter::large_int`]`("number | bigint")`.
//!
//! ## Other languages
//!
//! [`Exporter::json_schema`] writes the JSON document the existing ephaptic generator reads
//! (`methods`, `events`, `errors`, `definitions`), so its Kotlin and TypeScript generators can
//! produce bindings for a Rust server: `ephaptic generate schema.json -o Ephaptic.kt`.

mod diff;
mod fields;
mod json;
mod render;
pub mod scaffold;
mod text;

pub use fields::snake_case_fields;

use std::fmt;
use std::path::{Path, PathBuf};

use ephaptic::export::{Description, TypeDesc};

pub use render::Exporter;

/// What can go wrong while exporting.
///
/// Its `Debug` form is its `Display` form, so `ephaptic_ts::check(..).unwrap()` in a test
/// prints the readable message (and the diff) rather than an escaped one-line dump.
#[non_exhaustive]
pub enum Error {
    /// The declarations conflict (the server would not start either).
    Registry(ephaptic::RegistryError),
    /// The file could not be read or written.
    Io(PathBuf, std::io::Error),
    /// The checked-in file differs from what the Rust types produce.
    Stale {
        /// The file.
        path: PathBuf,
        /// A line diff, `-` for the file, `+` for the fresh export.
        diff: String,
    },
    /// The file did not exist: it has been written now, and should be committed.
    Created(PathBuf),
    /// Nothing is registered in the binary the export ran in: the crate that defines the
    /// functions is not linked into it.
    Empty {
        /// The binary.
        binary: String,
    },
    /// Types without a TypeScript description would be typed `unknown`.
    Unknown {
        /// Each type's Rust name, with where it is used.
        types: Vec<(String, Vec<String>)>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Registry(e) => write!(f, "the declarations conflict:\n{e}"),
            Error::Io(path, e) => write!(f, "{}: {e}", path.display()),
            Error::Stale { path, diff } => write!(
                f,
                "{} is stale: the Rust types changed. Regenerate it (`cargo ephaptic export {}`, or \
                 EPHAPTIC_TS_UPDATE=1 cargo test) and commit it. `-` is the file, `+` the fresh export:\n{diff}",
                path.display(),
                path.display()
            ),
            Error::Created(path) => write!(
                f,
                "{} did not exist, so it has been written now: check it and commit it, and this check \
                 passes from the next run. (On CI, this means the file is not committed.)",
                path.display()
            ),
            Error::Empty { binary } => write!(
                f,
                "no exposed functions or events were found in {binary}, so the schema would be empty. \
                 The export reads what is linked into that binary, and the linker drops a crate that \
                 nothing references: if your functions live in another crate (your library target, \
                 say), reference it where the export runs: `use my_app as _;` in the test file for \
                 `ephaptic_ts::check`, or in main.rs (or call into it) for `cargo ephaptic export`. \
                 Or register them with `Server::register::<function_name>()`."
            ),
            Error::Unknown { types } => {
                writeln!(
                    f,
                    "these Rust types have no TypeScript description and would be typed `unknown`:"
                )?;
                for (ty, uses) in types {
                    writeln!(f, "  {ty}  (used by {})", uses.join(", "))?;
                }
                write!(
                    f,
                    "Derive it with #[ephaptic::model] (for a struct or enum of your own, in place of \
                     #[derive(Serialize, Deserialize)]), or take/return `ephaptic::Value` for data of \
                     any shape. To export them as `unknown` anyway: `--allow-unknown` \
                     (cargo ephaptic export) or `Exporter::new().allow_unknown(true)`."
                )
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// Writes the schema of this build to `path` with the default settings.
pub fn export_to(path: impl AsRef<Path>) -> Result<(), Error> {
    Exporter::new().export_to(path)
}

/// Fails with a diff when `path` differs from the schema this build produces. With
/// `EPHAPTIC_TS_UPDATE=1` in the environment it writes the file instead; when the file does
/// not exist yet, it writes it and fails once ([`Error::Created`]).
pub fn check(path: impl AsRef<Path>) -> Result<(), Error> {
    Exporter::new().check(path)
}

/// The schema of this build as a string.
pub fn render() -> Result<String, Error> {
    Exporter::new().render()
}

/// Refuses a description that would give a useless or silently weak schema: nothing
/// registered ([`Error::Empty`]), or types typed `unknown` that are not dynamic values
/// ([`Error::Unknown`], unless `allow_unknown`). See "Types typed `unknown`" in the crate docs.
pub fn verify(desc: &Description<'_>, allow_unknown: bool) -> Result<(), Error> {
    if desc.functions.is_empty() && desc.events.is_empty() {
        return Err(Error::Empty {
            binary: desc.binary.clone(),
        });
    }
    if allow_unknown {
        return Ok(());
    }
    let mut types: Vec<(String, Vec<String>)> = Vec::new();
    each_type(desc, |ty, place| {
        if ty.is_described() || ty.rust_name == "()" || is_dynamic(ty.rust_name) {
            return;
        }
        match types.iter_mut().find(|(name, _)| name == ty.rust_name) {
            Some((_, uses)) => uses.push(place),
            None => types.push((ty.rust_name.to_string(), vec![place])),
        }
    });
    if types.is_empty() {
        Ok(())
    } else {
        Err(Error::Unknown { types })
    }
}

/// Calls `f` with every type a description uses and where (`createTodo(todo)`,
/// `createTodo -> result`, `event todoCreated`, `error NOT_FOUND`).
pub(crate) fn each_type<'d>(
    desc: &'d Description<'_>,
    mut f: impl FnMut(&'d TypeDesc<'_>, String),
) {
    for func in &desc.functions {
        for p in &func.sig.params {
            f(&p.ty, format!("{}({})", func.def.name, p.name));
        }
        f(&func.sig.output, format!("the result of {}", func.def.name));
    }
    for e in &desc.events {
        f(&e.ty, format!("the event {}", e.name));
    }
    for e in &desc.errors {
        f(&e.data, format!("the data of the error {}", e.code));
    }
}

/// Whether a type without a TypeScript description is `unknown` on purpose: a dynamic value
/// (`ephaptic::Value`, `serde_json::Value`), alone or inside standard containers (`Vec`,
/// `Option`, `HashMap<String, _>`, tuples, ...). Any other type (your own, or another crate's)
/// is not.
fn is_dynamic(rust_name: &str) -> bool {
    const DYNAMIC: &[&str] = &[
        "rmpv::Value",
        "serde_json::value::Value",
        "serde_json::Value",
    ];
    const PRIMITIVES: &[&str] = &[
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32",
        "i64", "i128", "isize", "f32", "f64",
    ];
    let mut dynamic = false;
    for path in rust_name
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|p| !p.is_empty())
    {
        if DYNAMIC.contains(&path) {
            dynamic = true;
        } else if !(PRIMITIVES.contains(&path)
            || path.starts_with("alloc::")
            || path.starts_with("core::")
            || path.starts_with("std::"))
        {
            return false;
        }
    }
    dynamic
}

/// `old` against `new` as unified-diff hunks of lines (`-` for `old`, `+` for `new`, two lines
/// of context), as stale-schema messages show it.
pub fn line_diff(old: &str, new: &str) -> String {
    diff::lines(old, new)
}

/// `Ok` when `path` holds `fresh`; writes it when missing ([`Error::Created`]), else a diff.
fn compare(path: &Path, fresh: &str) -> Result<(), Error> {
    match std::fs::read_to_string(path) {
        Ok(current) if current == fresh => Ok(()),
        Ok(current) => Err(Error::Stale {
            path: path.into(),
            diff: diff::lines(&current, fresh),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write(path, fresh)?;
            Err(Error::Created(path.into()))
        }
        Err(e) => Err(Error::Io(path.into(), e)),
    }
}

/// Writes `text` to `path`, creating parent directories.
fn write(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.into(), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::Io(path.into(), e))
}

#[cfg(test)]
mod tests {
    use super::is_dynamic;

    #[test]
    fn dynamic_values_may_be_unknown_other_types_may_not() {
        assert!(is_dynamic("rmpv::Value"));
        assert!(is_dynamic("alloc::vec::Vec<rmpv::Value>"));
        assert!(is_dynamic(
            "std::collections::hash::map::HashMap<alloc::string::String, rmpv::Value>"
        ));
        assert!(is_dynamic(
            "core::option::Option<(u8, serde_json::value::Value)>"
        ));
        assert!(!is_dynamic("mistakes::PlainTodo"));
        assert!(!is_dynamic("alloc::vec::Vec<mistakes::PlainTodo>"));
        assert!(!is_dynamic("(rmpv::Value, my_app::Plain)"));
        assert!(!is_dynamic("std::time::Instant"));
    }

    #[test]
    fn debug_reads_like_display() {
        let e = super::Error::Stale {
            path: "web/schema.ts".into(),
            diff: "@@ -1 +1 @@\n-a\n+b\n".into(),
        };
        assert_eq!(format!("{e:?}"), format!("{e}"));
        assert!(format!("{e:?}").contains("\n-a\n+b\n"));
    }
}
