//! `cargo ephaptic new <NAME>`: writes a new app, the template (a server and a typed Vite page),
//! with dependencies that resolve (`ephaptic_ts::scaffold`).
//!
//! `cargo ephaptic export <schema.ts>`: builds and runs your server binary with
//! `EPHAPTIC_EXPORT` set, so that it describes its functions, events and errors instead of
//! serving (see `ephaptic::export`), and writes `schema.ts` from that description. Works for any
//! crate shape (a bin-only crate included) and uses the server's own naming rule.
//!
//! Install: `cargo install --path ephaptic-ts` from a checkout (`cargo install ephaptic-ts` once
//! the crate is published).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime};

use ephaptic::export::Description;

const USAGE: &str = "\
usage: cargo ephaptic new <NAME> [--dir <DIR>] [--published | --checkout <DIR> | --crates <DIR> --client <TGZ>]
       cargo ephaptic export <schema.ts> [options] [-- <arguments for the server binary>]

`new` writes a new app in ./NAME (or DIR): a server (src/lib.rs, src/main.rs), a test that keeps
web/src/schema.ts current, and a Vite page typed by it. Its dependencies come from the ephaptic
checkout this command was installed from (path dependencies), or with --published from
crates.io and npm, with --checkout from another checkout, or with --crates and --client from
packed crates (a directory of unpacked `cargo package` output) and an @ephaptic/client tarball.

Builds and runs your server binary (`cargo run`) with EPHAPTIC_EXPORT set: at the point it would
start serving, it describes its functions, events and errors and exits, and schema.ts is written
from that, with the server's own naming rule. Works for any crate shape, a bin-only one included.

options:
  --bin <NAME>            the server binary, when the package has several
  -p, --package <NAME>    the package, in a workspace
  --manifest-path <PATH>  the Cargo.toml to use
  --features <FEATURES>   features to build the binary with
  --release               build in release mode
  --watch                 export again whenever a .rs file or Cargo.toml changes (ctrl-c stops)
  --check                 write nothing; fail with a diff when the file is stale (for CI)
  --allow-unknown         export types without a TypeScript description as `unknown`
  --large-int <TYPE>      the TypeScript type of 64-bit integers (default `number`;
                          `number | bigint` for a client created with { bigint: true })
";

#[derive(Debug, Default)]
struct Options {
    out: PathBuf,
    cargo_args: Vec<String>,
    manifest_path: Option<PathBuf>,
    program_args: Vec<String>,
    watch: bool,
    check: bool,
    allow_unknown: bool,
    large_int: Option<String>,
}

/// What the command line asks for.
#[derive(Debug)]
enum Command_ {
    New(NewOptions),
    Export(Options),
}

#[derive(Debug)]
struct NewOptions {
    name: String,
    dir: PathBuf,
    source: ephaptic_ts::scaffold::Source,
}

fn parse(args: Vec<String>) -> Result<Command_, String> {
    let mut args = args.into_iter().peekable();
    // `cargo ephaptic ...` runs `cargo-ephaptic ephaptic ...`.
    if args.peek().map(String::as_str) == Some("ephaptic") {
        args.next();
    }
    match args.next().as_deref() {
        Some("export") => parse_export(args.collect()).map(Command_::Export),
        Some("new") => parse_new(args.collect()).map(Command_::New),
        Some("-h" | "--help" | "help") | None => Err(String::new()),
        Some(other) => Err(format!(
            "unknown command `{other}`: the commands are `new` and `export`"
        )),
    }
}

fn parse_new(args: Vec<String>) -> Result<NewOptions, String> {
    use ephaptic_ts::scaffold::Source;
    let mut args = args.into_iter();
    let (mut name, mut dir, mut source) = (None, None, None);
    let (mut crates, mut client) = (None, None);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value(&a)?)),
            "--published" => source = Some(Source::Published),
            "--checkout" => source = Some(Source::Checkout(value(&a)?.into())),
            "--crates" => crates = Some(PathBuf::from(value(&a)?)),
            "--client" => client = Some(PathBuf::from(value(&a)?)),
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            n if name.is_none() => name = Some(n.to_owned()),
            extra => return Err(format!("one name only (got `{extra}` too)")),
        }
    }
    let name = name.ok_or("what is the app called? e.g. `cargo ephaptic new my-app`")?;
    let source = match (crates, client) {
        (Some(crates), Some(client)) if source.is_none() => Source::Packed { crates, client },
        (None, None) => source.unwrap_or_else(Source::detect),
        _ => {
            return Err(
                "--crates and --client go together, without --published or --checkout".into(),
            );
        }
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    Ok(NewOptions { name, dir, source })
}

fn parse_export(args: Vec<String>) -> Result<Options, String> {
    let mut args = args.into_iter().peekable();
    let mut o = Options::default();
    let mut out = None;
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--bin" | "-p" | "--package" | "--features" => {
                let v = value(&a)?;
                o.cargo_args.extend([a, v]);
            }
            "--manifest-path" => o.manifest_path = Some(value(&a)?.into()),
            "--release" => o.cargo_args.push(a),
            "--watch" => o.watch = true,
            "--check" => o.check = true,
            "--allow-unknown" => o.allow_unknown = true,
            "--large-int" => o.large_int = Some(value(&a)?),
            "-h" | "--help" => return Err(String::new()),
            "--" => {
                o.program_args = args.by_ref().collect();
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            path if out.is_none() => out = Some(PathBuf::from(path)),
            extra => return Err(format!("one output file only (got `{extra}` too)")),
        }
    }
    o.out =
        out.ok_or("where should schema.ts go? e.g. `cargo ephaptic export web/src/schema.ts`")?;
    if o.watch && o.check {
        return Err("--watch and --check do not go together".into());
    }
    Ok(o)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// What one export did.
enum Outcome {
    Written(String),
    Current(String),
}

/// Builds and runs the server binary once, and writes (or checks) the schema.
fn export(o: &Options) -> Result<Outcome, String> {
    let dump = std::env::temp_dir().join(format!("ephaptic-export-{}.msgpack", std::process::id()));
    let _ = std::fs::remove_file(&dump);
    let mut cmd = cargo();
    cmd.arg("run").args(&o.cargo_args);
    if let Some(m) = &o.manifest_path {
        cmd.arg("--manifest-path").arg(m);
    }
    cmd.arg("--").args(&o.program_args);
    cmd.env(ephaptic::export::ENV, &dump);
    cmd.env(
        ephaptic::export::ENV_LARGE_INT,
        o.large_int.as_deref().unwrap_or("number"),
    );
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    let bytes = match std::fs::read(&dump) {
        Ok(bytes) => bytes,
        Err(_) if !status.success() => {
            return Err(format!(
                "`cargo run` failed ({status}); see its output above"
            ));
        }
        Err(_) => {
            return Err(
                "the server binary ended without describing itself. The export runs it until it \
                 would start serving (`ephaptic::serve`, `Server::serve`, `Server::router`) and \
                 it ended before that: does main reach the server without arguments? Pass them \
                 after `--`. (Is it an ephaptic server at all? With several binaries, pick one \
                 with --bin.)"
                    .into(),
            );
        }
    };
    let _ = std::fs::remove_file(&dump);
    let desc = Description::from_bytes(&bytes)?;
    ephaptic_ts::verify(&desc, o.allow_unknown).map_err(|e| e.to_string())?;
    let exporter = ephaptic_ts::Exporter::new();
    let text = exporter.render_description(&desc);
    let summary = format!(
        "{} function{}, {} event{} and {} channel{}, names {}",
        desc.functions.len(),
        plural(desc.functions.len()),
        desc.events.len(),
        plural(desc.events.len()),
        desc.channels.len(),
        plural(desc.channels.len()),
        match desc.naming.as_str() {
            "CamelCase" => "camelCase",
            _ => "as written",
        }
    );
    let snake = ephaptic_ts::snake_case_fields(&desc);
    if !snake.is_empty() {
        let list: Vec<String> = snake
            .iter()
            .map(|(ident, names)| format!("{ident} ({})", names.join(", ")))
            .collect();
        eprintln!(
            "ephaptic: note: naming!(CamelCase) names functions; fields keep the names serde gives them, \
             and these are snake_case: {}. Add #[serde(rename_all = \"camelCase\")] to each of \
             those types to follow the rule (or leave them, if snake_case is what clients expect).",
            list.join("; ")
        );
    }
    let current = std::fs::read_to_string(&o.out).ok();
    if current.as_deref() == Some(text.as_str()) {
        return Ok(Outcome::Current(summary));
    }
    if o.check {
        let path = &o.out;
        return Err(match current {
            Some(current) => format!(
                "{} is stale: run `cargo ephaptic export {}` and commit it. `-` is the file, `+` the fresh export:\n{}",
                path.display(),
                path.display(),
                ephaptic_ts::line_diff(&current, &text)
            ),
            None => format!(
                "{} does not exist: create it with `cargo ephaptic export {}` and commit it",
                path.display(),
                path.display()
            ),
        });
    }
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&o.out, text).map_err(|e| format!("{}: {e}", o.out.display()))?;
    Ok(Outcome::Written(summary))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn report(o: &Options, result: Result<Outcome, String>) -> bool {
    match result {
        Ok(Outcome::Written(summary)) => {
            eprintln!("ephaptic: wrote {} ({summary})", o.out.display());
            true
        }
        Ok(Outcome::Current(summary)) => {
            eprintln!("ephaptic: {} is up to date ({summary})", o.out.display());
            true
        }
        Err(e) => {
            eprintln!("ephaptic: export failed: {e}");
            false
        }
    }
}

/// The workspace root, whose sources `--watch` watches.
fn watch_root(o: &Options) -> PathBuf {
    let mut cmd = cargo();
    cmd.args(["locate-project", "--workspace", "--message-format", "plain"]);
    if let Some(m) = &o.manifest_path {
        cmd.arg("--manifest-path").arg(m);
    }
    cmd.output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| {
            let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            manifest.parent().map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Modification times of the files a rebuild depends on: `.rs` files, `Cargo.toml`s and
/// `Cargo.lock`, outside build outputs, `node_modules` and hidden directories.
fn snapshot(root: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, SystemTime> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !(name.starts_with('.')
                    || name == "target"
                    || name == "node_modules"
                    || skip.contains(&path))
                {
                    dirs.push(path);
                }
            } else if (name.ends_with(".rs") || name == "Cargo.toml" || name == "Cargo.lock")
                && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            {
                files.insert(path, modified);
            }
        }
    }
    files
}

fn watch(o: &Options) -> ! {
    let root = watch_root(o);
    let skip: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| std::fs::canonicalize(&d).unwrap_or_else(|_| d.into()))
        .into_iter()
        .collect();
    let mut seen = snapshot(&root, &skip);
    report(o, export(o));
    loop {
        eprintln!(
            "ephaptic: watching {} for changes (ctrl-c stops)",
            root.display()
        );
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = snapshot(&root, &skip);
            if now != seen {
                // Let an editor finish saving a batch of files.
                std::thread::sleep(Duration::from_millis(200));
                seen = snapshot(&root, &skip);
                break;
            }
        }
        report(o, export(o));
    }
}

fn main() -> ExitCode {
    let o = match parse(std::env::args().skip(1).collect()) {
        Ok(Command_::Export(o)) => o,
        Ok(Command_::New(n)) => return new(&n),
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if o.watch {
        watch(&o);
    }
    if report(&o, export(&o)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `cargo ephaptic new`: writes the app and says how to run it.
fn new(n: &NewOptions) -> ExitCode {
    match ephaptic_ts::scaffold::new_app(&n.name, &n.dir, &n.source) {
        Ok(made) => {
            for note in &made.notes {
                eprintln!("ephaptic: note: {note}");
            }
            let dir = made.dir.display();
            eprintln!(
                "ephaptic: created {dir}, depending on {}.\n\
                 Run the server:      cd {dir} && cargo run\n\
                 Run the page:        cd {dir}/web && npm install && npm run dev   (http://localhost:5173)\n\
                 After changing src/: cargo ephaptic export web/src/schema.ts   (cargo test checks it is current)",
                made.source
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ephaptic: new failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Command_, Options};

    fn parse(args: Vec<String>) -> Result<Options, String> {
        match super::parse(args)? {
            Command_::Export(o) => Ok(o),
            Command_::New(n) => Err(format!("new {n:?}")),
        }
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_as_cargo_passes_them_and_as_typed_directly() {
        let o = parse(args(
            "ephaptic export web/schema.ts --bin server --watch -- --addr x",
        ))
        .unwrap();
        assert_eq!(o.out.to_str(), Some("web/schema.ts"));
        assert_eq!(o.cargo_args, ["--bin", "server"]);
        assert_eq!(o.program_args, ["--addr", "x"]);
        assert!(o.watch && !o.check);
        let o = parse(args(
            "export s.ts --check --allow-unknown --large-int bigint",
        ))
        .unwrap();
        assert!(o.check && o.allow_unknown);
        assert_eq!(o.large_int.as_deref(), Some("bigint"));
        assert!(
            parse(args("export"))
                .unwrap_err()
                .contains("where should schema.ts go")
        );
        assert!(
            parse(args("export a.ts --frob"))
                .unwrap_err()
                .contains("--frob")
        );
        assert!(parse(args("generate a.ts")).unwrap_err().contains("export"));
        assert_eq!(parse(args("--help")).unwrap_err(), "");
    }

    #[test]
    fn new_takes_a_name_and_where_the_dependencies_come_from() {
        use ephaptic_ts::scaffold::Source;
        let Ok(Command_::New(n)) = super::parse(args("ephaptic new my-app --published")) else {
            panic!("new");
        };
        assert_eq!(
            (n.name.as_str(), n.dir.to_str()),
            ("my-app", Some("my-app"))
        );
        assert_eq!(n.source, Source::Published);
        let Ok(Command_::New(n)) = super::parse(args(
            "new x --dir /tmp/x --crates /c --client /c/client.tgz",
        )) else {
            panic!("new");
        };
        assert_eq!(n.dir.to_str(), Some("/tmp/x"));
        assert!(matches!(n.source, Source::Packed { .. }));
        let e = super::parse(args("new x --crates /c")).unwrap_err();
        assert!(e.contains("--crates and --client go together"), "{e}");
        let e = super::parse(args("new")).unwrap_err();
        assert!(e.contains("cargo ephaptic new my-app"), "{e}");
    }
}
