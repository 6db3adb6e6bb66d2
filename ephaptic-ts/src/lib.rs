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
//! The exporter reads the registry of the binary it runs in, so it must run where your exposed
//! functions are linked. Two ways:
//!
//! **From a test** (recommended: CI fails when the checked-in file is stale):
//!
//! ```no_run
//! // tests/schema.rs of the crate that defines the functions (a library crate, or a bin
//! // whose handlers live in its lib target). Link the handlers with `use my_app as _;`.
//!
//! #[test]
//! fn schema_ts_is_current() {
//!     ephaptic_ts::check(concat!(env!("CARGO_MANIFEST_DIR"), "/frontend/src/schema.ts")).unwrap();
//! }
//! ```
//! Run with `EPHAPTIC_TS_UPDATE=1 cargo test` to (re)write the file instead of comparing.
//!
//! **From a small bin or a flag of your server**:
//!
//! ```no_run
//! if std::env::args().any(|a| a == "--export-ts") {
//!     ephaptic_ts::export_to("frontend/src/schema.ts").unwrap();
//!     return;
//! }
//! ```
//!
//! ## Types
//!
//! Types reach TypeScript through ts-rs. `#[ephaptic::event]`, `#[ephaptic::error]` and
//! `#[ephaptic::model]` derive it; `#[ephaptic::model]` also records which fields a client may
//! leave out (serde `default`, `Option`), so an argument of type `Item` is exported as
//! `ItemInput` (those fields optional) while results and events use `Item` (all present). A type
//! with no TypeScript description (such as `ephaptic::Value`) is exported as `unknown`, and the
//! file says which.
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

mod json;
mod render;
mod text;

use std::fmt;
use std::path::{Path, PathBuf};

pub use render::Exporter;

/// What can go wrong while exporting.
#[derive(Debug)]
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Registry(e) => write!(f, "the declarations conflict:\n{e}"),
            Error::Io(path, e) => write!(f, "{}: {e}", path.display()),
            Error::Stale { path, diff } => write!(
                f,
                "{} is stale: the Rust types changed. Regenerate it (EPHAPTIC_TS_UPDATE=1 cargo test, or your export step) and commit it.\n{diff}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Writes the schema of this build to `path` with the default settings.
pub fn export_to(path: impl AsRef<Path>) -> Result<(), Error> {
    Exporter::new().export_to(path)
}

/// Fails with a diff when `path` differs from the schema this build produces. With
/// `EPHAPTIC_TS_UPDATE=1` in the environment it writes the file instead.
pub fn check(path: impl AsRef<Path>) -> Result<(), Error> {
    Exporter::new().check(path)
}

/// The schema of this build as a string.
pub fn render() -> Result<String, Error> {
    Exporter::new().render()
}

/// A small line diff: common prefix and suffix trimmed, the middle shown as removed/added.
fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = format!("@@ line {} @@\n", prefix + 1);
    for line in &a[prefix..a.len() - suffix] {
        out.push_str(&format!("-{line}\n"));
    }
    for line in &b[prefix..b.len() - suffix] {
        out.push_str(&format!("+{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_shows_only_the_changed_lines() {
        let d = super::diff("a\nb\nc\nd\n", "a\nB\nc\nd\n");
        assert_eq!(d, "@@ line 2 @@\n-b\n+B\n");
    }
}
