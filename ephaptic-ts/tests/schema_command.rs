//! The documented schema command, `cargo ephaptic export`, on a bin-only crate as a newcomer
//! writes it (everything in `main.rs`, which just calls `ephaptic::serve`): it types the
//! function and the event under the declared naming rule (and names the event's snake_case
//! field, which that rule leaves to serde), and a binary with nothing registered
//! fails with the fix in the message.
//!
//! The crate is written under `target/tmp` and built into the workspace's own target directory
//! with the workspace's `Cargo.lock`, so only it (and the few dependencies whose features differ
//! from the workspace build, once) are compiled.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAIN: &str = r#"
ephaptic::naming!(CamelCase);

/// Something happened on the server.
#[ephaptic::event]
pub struct SomethingHappened {
    pub message: String,
    pub is_error: bool,
}

/// Adds two numbers.
#[ephaptic::expose]
async fn add_numbers(a: i64, b: i64) -> i64 {
    a + b
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    ephaptic::serve("127.0.0.1:0").await
}
"#;

/// A server whose functions are in a crate it forgot to link: it registers nothing.
const EMPTY: &str = r#"
#[tokio::main]
async fn main() -> std::io::Result<()> {
    ephaptic::serve("127.0.0.1:0").await
}
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// The bin-only crate `ephaptic-schema-command-fixture` (a name nothing else in the shared target
/// directory uses), with a second binary, `empty`, written afresh.
fn crate_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schema-command");
    let ws = workspace();
    let manifest = format!(
        r#"[package]
name = "ephaptic-schema-command-fixture"
version = "0.1.0"
edition = "2024"
publish = false
default-run = "ephaptic-schema-command-fixture"

[dependencies]
ephaptic = {{ path = {ephaptic:?} }}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros"] }}

[workspace]
"#,
        ephaptic = ws.join("ephaptic")
    );
    std::fs::create_dir_all(dir.join("src/bin")).unwrap();
    let put = |path: &str, text: &str| {
        let path = dir.join(path);
        // Unchanged files keep their mtime, so cargo does not rebuild the crate.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).unwrap();
        }
    };
    put("Cargo.toml", &manifest);
    put("src/main.rs", MAIN);
    put("src/bin/empty.rs", EMPTY);
    // The workspace's versions: nothing to resolve or download, and the built ones are reused.
    let lock = std::fs::read_to_string(ws.join("Cargo.lock")).unwrap();
    if !dir.join("Cargo.lock").exists() {
        put("Cargo.lock", &lock);
    }
    dir
}

/// `cargo ephaptic export <out> --manifest-path <dir>/Cargo.toml <extra>`, as cargo runs it.
fn export(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_cargo-ephaptic"))
        .arg("ephaptic")
        .arg("export")
        .arg(out)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(extra)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("EPHAPTIC_EXPORT")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bin_only_crate_exports_its_function_and_event_and_an_empty_one_fails_with_the_fix() {
    let dir = crate_dir();
    let out = dir.join("web/src/schema.ts");
    let _ = std::fs::remove_file(&out);

    let run = export(&dir, &out, &[]);
    assert!(run.status.success(), "the export failed:\n{}", stderr(&run));
    let ts = std::fs::read_to_string(&out).unwrap();
    assert!(
        ts.contains("  addNumbers(a: number, b: number): Promise<number>;"),
        "the function, camelCase as declared with naming!: {ts}"
    );
    assert!(
        ts.contains("  /** Adds two numbers. */\n  addNumbers("),
        "{ts}"
    );
    assert!(
        ts.contains("export type SomethingHappened = { message: string, is_error: boolean, };"),
        "{ts}"
    );
    assert!(
        ts.contains("  \"SomethingHappened\": SomethingHappened;"),
        "the event: {ts}"
    );
    assert!(
        stderr(&run).contains("1 function, 1 event"),
        "{}",
        stderr(&run)
    );
    // naming!(CamelCase) leaves fields to serde: the export says which are still snake_case.
    assert!(
        stderr(&run).contains("these are snake_case: SomethingHappened (is_error). Add #[serde(rename_all = \"camelCase\")]"),
        "{}",
        stderr(&run)
    );

    // --check passes on the file it just wrote, and fails with a diff once it is edited.
    let run = export(&dir, &out, &["--check"]);
    assert!(run.status.success(), "{}", stderr(&run));
    std::fs::write(
        &out,
        ts.replace("  addNumbers(a: number, b: number): Promise<number>;\n", ""),
    )
    .unwrap();
    let run = export(&dir, &out, &["--check"]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains("is stale")
            && err.contains("\n+  addNumbers(a: number, b: number): Promise<number>;\n"),
        "{err}"
    );
    assert!(
        !err.contains("\n-"),
        "only the missing line is shown: {err}"
    );

    // Nothing registered: a failure that says why and how to fix it, and no file.
    let empty = dir.join("web/src/empty.ts");
    let _ = std::fs::remove_file(&empty);
    let run = export(&dir, &empty, &["--bin", "empty"]);
    assert!(!run.status.success(), "an empty registry must fail");
    let err = stderr(&run);
    assert!(
        err.contains("no exposed functions or events were found in")
            && err.contains("empty")
            && err.contains("`use my_app as _;`"),
        "{err}"
    );
    assert!(!empty.exists(), "nothing is written on failure");

    // Served, the same binary says so at start, naming the library to link (the package's).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let mut served = Command::new(env!("CARGO"))
        .args(["run", "-q", "--bin", "empty", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .env_remove("EPHAPTIC_EXPORT")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(served.stderr.take().unwrap()));
    let warning = lines
        .map_while(Result::ok)
        .find(|l| l.contains("no exposed functions were found"));
    let _ = served.kill();
    let _ = served.wait();
    let warning = warning.expect("the start-up warning");
    assert!(
        warning.contains("add `use ephaptic_schema_command_fixture as _;` to main.rs"),
        "{warning}"
    );
}
