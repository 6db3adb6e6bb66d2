//! `cargo ephaptic new NAME`: writes the template app (`ephaptic-ts/template`, shipped inside
//! this package) into a new directory, with dependencies that resolve where it is written: the
//! published versions, the ephaptic checkout this command was installed from, or packed crates
//! and npm tarballs (what the packaging test uses).
//!
//! The template's files are compiled into the command (`include_str!`), so an installed command
//! needs nothing beside it. Only its two manifests are written here rather than copied: the
//! crate's name, and where `ephaptic`, `ephaptic-ts` and `@ephaptic/client` come from, are what
//! differ from one app to the next.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The template's files, by their path in the new app. `template` in the Rust files is the
/// crate's name, replaced by the app's.
const FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../template/README.md")),
    ("src/lib.rs", include_str!("../template/src/lib.rs")),
    ("src/main.rs", include_str!("../template/src/main.rs")),
    (
        "tests/schema.rs",
        include_str!("../template/tests/schema.rs"),
    ),
    ("web/.gitignore", include_str!("../template/web/.gitignore")),
    ("web/index.html", include_str!("../template/web/index.html")),
    (
        "web/src/client.ts",
        include_str!("../template/web/src/client.ts"),
    ),
    (
        "web/src/main.ts",
        include_str!("../template/web/src/main.ts"),
    ),
    (
        "web/src/schema.ts",
        include_str!("../template/web/src/schema.ts"),
    ),
    (
        "web/tsconfig.json",
        include_str!("../template/web/tsconfig.json"),
    ),
    (
        "web/vite.config.ts",
        include_str!("../template/web/vite.config.ts"),
    ),
];

/// The template's `web/package.json`; its `@ephaptic/client` is replaced by the app's.
const PACKAGE_JSON: &str = include_str!("../template/web/package.json");

/// Where the app's ephaptic dependencies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The published crates (`ephaptic = "0.1"`) and npm package (`@ephaptic/client@^0.1`).
    Published,
    /// An ephaptic checkout: path dependencies on its crates, and `@ephaptic/client` packed from
    /// its `ephaptic-ts/client` (`pack.sh`, into its `target/npm`; the folder itself when that
    /// cannot run, which npm 11 warns about at each install).
    Checkout(PathBuf),
    /// Packed artifacts: a directory of unpacked `.crate` packages (`ephaptic-0.1.0/`, ...),
    /// depended on by version and patched in (as the registry will serve them), and the
    /// `@ephaptic/client` tarball.
    Packed {
        /// Holds `ephaptic-<version>`, `ephaptic-macros-<version>`, `ephaptic-ts-<version>`.
        crates: PathBuf,
        /// The `@ephaptic/client` `.tgz`.
        client: PathBuf,
    },
}

impl Source {
    /// The checkout this command was built from, when it still exists there (`cargo install
    /// --path ephaptic-ts`); the published packages otherwise.
    pub fn detect() -> Source {
        let built_in = Path::new(env!("CARGO_MANIFEST_DIR"));
        match built_in.parent() {
            Some(root)
                if root.join("ephaptic/Cargo.toml").is_file()
                    && root.join("ephaptic-ts/client/package.json").is_file() =>
            {
                Source::Checkout(root.to_path_buf())
            }
            _ => Source::Published,
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Published => format!(
                "the published ephaptic {VERSION} (crates.io and npm; until it is published, pass \
                 --checkout DIR, an ephaptic checkout)"
            ),
            Source::Checkout(root) => format!("the ephaptic checkout at {}", root.display()),
            Source::Packed { crates, client } => format!(
                "the packed crates in {} and {}",
                crates.display(),
                client.display()
            ),
        }
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What [`new_app`] wrote.
#[derive(Debug)]
pub struct Created {
    /// The app's directory.
    pub dir: PathBuf,
    /// What it depends on, in words.
    pub source: String,
    /// What the user should know (a fallback taken), one line each.
    pub notes: Vec<String>,
}

/// Writes the template app named `name` into `dir` (which must not exist, or be empty).
pub fn new_app(name: &str, dir: &Path, source: &Source) -> Result<Created, String> {
    check_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{} exists and is not empty: pick another name or directory",
            dir.display()
        ));
    }
    let ident = name.replace('-', "_");
    let mut files: Vec<(String, String)> = FILES
        .iter()
        .map(|(path, text)| {
            let text = if path.ends_with(".rs") || *path == "README.md" {
                text.replace("template::", &format!("{ident}::"))
                    .replace("use template as _", &format!("use {ident} as _"))
            } else if *path == "web/index.html" {
                text.replace(
                    "<title>ephaptic template</title>",
                    &format!("<title>{name}</title>"),
                )
            } else {
                (*text).to_owned()
            };
            ((*path).to_owned(), text)
        })
        .collect();
    let mut notes = Vec::new();
    files.push(("Cargo.toml".into(), manifest(name, source)?));
    files.push((
        "web/package.json".into(),
        package_json(name, source, &mut notes)?,
    ));
    files.push((".gitignore".into(), "/target\n".into()));
    for (path, text) in &files {
        let at = dir.join(path);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&at, text).map_err(|e| format!("{}: {e}", at.display()))?;
    }
    Ok(Created {
        dir: dir.to_path_buf(),
        source: source.describe(),
        notes,
    })
}

/// A package name cargo and npm both take, and a Rust identifier once `-` is `_`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{name}` cannot name the app: use lowercase letters, digits, `-` and `_`, starting with a letter (e.g. `my-app`)"
        )),
    }
}

/// The app's `Cargo.toml`.
fn manifest(name: &str, source: &Source) -> Result<String, String> {
    let (ephaptic, ephaptic_ts) = match source {
        Source::Published | Source::Packed { .. } => {
            let v = format!("\"{}\"", minor(VERSION));
            (v.clone(), v)
        }
        Source::Checkout(root) => (
            format!("{{ path = {} }}", toml_str(&root.join("ephaptic"))?),
            format!("{{ path = {} }}", toml_str(&root.join("ephaptic-ts"))?),
        ),
    };
    let mut out = format!(
        "[package]
name = \"{name}\"
version = \"0.1.0\"
edition = \"2024\"
publish = false

[dependencies]
ephaptic = {ephaptic}
tokio = {{ version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }}
tracing-subscriber = \"0.3\"

[dev-dependencies]
ephaptic-ts = {ephaptic_ts}

# The app is a workspace of its own, wherever it is written (inside another workspace too);
# delete this table to make it a member of an enclosing one.
[workspace]
"
    );
    if let Source::Packed { crates, .. } = source {
        // Until the crates are on crates.io, the packed ones stand in for them: the
        // dependencies above stay what they will be once published.
        out.push_str("\n[patch.crates-io]\n");
        for krate in ["ephaptic", "ephaptic-macros", "ephaptic-ts"] {
            let dir = crates.join(format!("{krate}-{VERSION}"));
            if !dir.join("Cargo.toml").is_file() {
                return Err(format!(
                    "{} has no {krate}-{VERSION}: unpack the `.crate` files of `cargo package` there",
                    crates.display()
                ));
            }
            let _ = writeln!(out, "{krate} = {{ path = {} }}", toml_str(&dir)?);
        }
    }
    Ok(out)
}

/// The app's `web/package.json`: the template's, with its name and its `@ephaptic/client`.
fn package_json(name: &str, source: &Source, notes: &mut Vec<String>) -> Result<String, String> {
    let client = match source {
        Source::Published => format!("^{VERSION}"),
        Source::Checkout(root) => match pack_client(root) {
            Ok(tarball) => format!("file:{}", json_path(&tarball)?),
            Err(why) => {
                notes.push(format!(
                    "@ephaptic/client is linked from the checkout's folder ({why}); npm 11 warns \
                     about its install script at each install (`npm install-scripts approve \
                     @ephaptic/client` stops that), and a tarball from `ephaptic-ts/pack.sh` avoids it"
                ));
                format!("file:{}", json_path(&root.join("ephaptic-ts/client"))?)
            }
        },
        Source::Packed { client, .. } => format!("file:{}", json_path(client)?),
    };
    let from = "\"@ephaptic/client\": \"file:../../client\"";
    if !PACKAGE_JSON.contains(from) {
        return Err(
            "the template's web/package.json no longer names @ephaptic/client as expected".into(),
        );
    }
    Ok(PACKAGE_JSON
        .replace(
            "\"name\": \"template-web\"",
            &format!("\"name\": \"{name}-web\""),
        )
        .replace(from, &format!("\"@ephaptic/client\": \"{client}\"")))
}

/// Packs the checkout's `@ephaptic/client` with its `pack.sh` into its `target/npm`: the
/// tarball an app installs as it will install the published package (no install script, the
/// types once), rather than a link to the folder.
fn pack_client(root: &Path) -> Result<PathBuf, String> {
    let script = root.join("ephaptic-ts/pack.sh");
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(root.join("target/npm"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run pack.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("pack.sh failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ephaptic-client-"))
        })
        .ok_or_else(|| "pack.sh named no client tarball".into())
}

/// `0.1.0` -> `0.1`: what an app writes to get the line's fixes.
fn minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((at, _)) => &version[..at],
        None => version,
    }
}

fn absolute(path: &Path) -> Result<String, String> {
    let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

/// A path as a TOML basic string.
fn toml_str(path: &Path) -> Result<String, String> {
    Ok(format!(
        "\"{}\"",
        absolute(path)?.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A path inside a JSON string.
fn json_path(path: &Path) -> Result<String, String> {
    Ok(absolute(path)?.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_template_under_the_apps_name_with_checkout_paths() {
        let dir = std::env::temp_dir().join(format!("ephaptic-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = PathBuf::from("/opt/ephaptic");
        let made = new_app("my-app", &dir, &Source::Checkout(root)).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        assert!(read("src/main.rs").contains("my_app::server()"));
        assert!(!read("src/main.rs").contains("template"));
        assert!(read("tests/schema.rs").contains(".server(my_app::server())"));
        let manifest = read("Cargo.toml");
        assert!(manifest.contains("name = \"my-app\""), "{manifest}");
        assert!(manifest.contains("ephaptic = { path = \"/opt/ephaptic/ephaptic\" }"));
        assert!(manifest.contains("ephaptic-ts = { path = \"/opt/ephaptic/ephaptic-ts\" }"));
        let package = read("web/package.json");
        assert!(
            package.contains("\"@ephaptic/client\": \"file:/opt/ephaptic/ephaptic-ts/client\"")
        );
        assert!(package.contains("\"name\": \"my-app-web\""));
        assert_eq!(
            read("web/src/schema.ts"),
            include_str!("../template/web/src/schema.ts")
        );
        assert!(made.source.contains("/opt/ephaptic"));
        // No pack.sh there: the folder, and a note that says what that costs.
        assert!(
            made.notes[0].contains("linked from the checkout's folder"),
            "{:?}",
            made.notes
        );
        assert!(
            manifest.contains("\n[workspace]\n"),
            "its own workspace: {manifest}"
        );
        // Not over an app that is there.
        let again = new_app("my-app", &dir, &Source::Published).unwrap_err();
        assert!(again.contains("not empty"), "{again}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn published_versions_and_names_cargo_takes() {
        let manifest = manifest("app", &Source::Published).unwrap();
        assert!(manifest.contains(&format!("ephaptic = \"{}\"", minor(VERSION))));
        assert_eq!(minor("0.1.0"), "0.1");
        for bad in ["My App", "1app", "", "app!", "crate/x"] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("lowercase letters"), "{bad}: {e}");
        }
    }
}
