//! The layer rule of ARCHITECTURE.md, checked on the runtime's sources: no import circle
//! between the top-level modules of `ephaptic/src`, and none between the files of one module
//! (`runtime/state.rs` and `runtime/presence/tracker.rs` are two files of `runtime`).
//!
//! It reads the code as text, as a reviewer would: every path in code (not in comments, strings
//! or `#[cfg(test)]` items) that starts with `crate::`, `super::` or `self::`, and in a module
//! file every `use` of a child module, resolved through the modules and the `use` re-exports
//! they hold to the file that defines what it names. The facades at the top (`lib.rs` and the
//! hidden `__private`, `__bench`, `__fuzz`) re-export everything and stand above the stack.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Top-level modules that are facades over the whole crate, not layers of it.
const FACADES: &[&str] = &["", "private", "bench", "fuzz"];

/// One source file: its module path (`["runtime", "presence", "tracker"]`; `[]` for lib.rs) and
/// its code with comments, strings and test-only items blanked out.
struct Source {
    module: Vec<String>,
    code: String,
}

fn sources(root: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel: PathBuf = path.strip_prefix(root).unwrap().to_path_buf();
                let mut module: Vec<String> = rel
                    .iter()
                    .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.push(Source {
                    module,
                    code: code_only(&text),
                });
            }
        }
    }
    out
}

/// `text` without comments, string literals and `#[cfg(test)]` items.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the item: up to the end of its first balanced brace block (or its `;`).
            let mut depth = 0i32;
            let mut opened = false;
            for next in lines.by_ref() {
                for c in next.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && next.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // Strings and trailing comments out (a rough cut, enough for paths).
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        for c in line.chars() {
            if in_str {
                if c == '"' && prev != '\\' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
            } else if c == '/' && prev == '/' {
                kept.pop();
                break;
            } else {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The paths a file's code names: `(start, segments)` where `start` is the module the path is
/// relative to.
fn paths(src: &Source, modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let code = &src.code;
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let is_dir_module = modules
        .iter()
        .any(|m| m.len() == src.module.len() + 1 && m.starts_with(&src.module));
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b'$')) {
            i += 1;
            continue;
        }
        let start = i;
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segments.push(code[s..j].to_owned());
            if code[j..].starts_with("::") && j + 2 < bytes.len() && ident(bytes[j + 2]) {
                j += 2;
            } else {
                break;
            }
        }
        i = j.max(start + 1);
        if segments.len() < 2 && !code[j..].starts_with("::{") {
            continue;
        }
        // Where the path starts.
        let relative = matches!(segments[0].as_str(), "crate" | "self" | "super");
        let mut base: Vec<String> = match segments[0].clone().as_str() {
            "crate" => Vec::new(),
            "self" => src.module.clone(),
            "super" => {
                // A file's `super` is its module's parent.
                let mut m = src.module.clone();
                let mut k = 0;
                while segments.get(k).is_some_and(|s| s == "super") {
                    m.pop();
                    k += 1;
                }
                segments.drain(..k - 1);
                m
            }
            first => {
                // In a module with children, `use child::...` and `child::...` name a child.
                let mut child = src.module.clone();
                child.push(first.to_owned());
                if !(is_dir_module && modules.contains(&child)) {
                    continue;
                }
                let mut with_base = src.module.clone();
                with_base.extend(segments.iter().cloned());
                with_base
            }
        };
        if relative {
            base.extend(segments.into_iter().skip(1));
        }
        // `path::{a, b::c}`: each name in the braces (one level) is a path of its own.
        if code[j..].starts_with("::{") {
            let inner = &code[j + 3..];
            let end = inner.find('}').unwrap_or(inner.len());
            for name in inner[..end].split(',') {
                let name = name.split(" as ").next().unwrap_or("").trim();
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
                {
                    let mut p = base.clone();
                    p.extend(name.split("::").map(str::to_owned));
                    out.push(p);
                }
            }
            continue;
        }
        out.push(base);
    }
    out
}

/// What each module's `use` items bring in (what its children, and with `pub` everyone, can
/// name through it): module -> name -> the module path it comes from.
fn reexports(srcs: &[Source]) -> HashMap<Vec<String>, HashMap<String, Vec<String>>> {
    let mut out: HashMap<Vec<String>, HashMap<String, Vec<String>>> = HashMap::new();
    for src in srcs {
        for stmt in src.code.split(';') {
            let stmt = stmt.trim();
            let Some(at) = stmt.find("use ") else {
                continue;
            };
            // A `use` in a module, public or not, is what `super::name` names in its children.
            if !(stmt[..at].trim().is_empty() || stmt[..at].trim_start().starts_with("pub")) {
                continue;
            }
            let path = stmt[at + 4..].trim();
            let (prefix, names) = match path.find('{') {
                Some(b) => (&path[..b], path[b + 1..].trim_end_matches('}')),
                None => match path.rfind("::") {
                    Some(c) => (&path[..c + 2], &path[c + 2..]),
                    None => continue,
                },
            };
            let mut from: Vec<String> = match prefix.split("::").next() {
                Some("crate") => Vec::new(),
                Some("super") => {
                    let mut m = src.module.clone();
                    m.pop();
                    m
                }
                _ => src.module.clone(),
            };
            from.extend(
                prefix
                    .split("::")
                    .filter(|s| !s.is_empty() && !matches!(*s, "crate" | "self" | "super"))
                    .map(str::to_owned),
            );
            for name in names.split(',') {
                let name = name.split(" as ").last().unwrap_or("").trim();
                if !name.is_empty() && !name.contains('{') && !name.contains(':') {
                    out.entry(src.module.clone())
                        .or_default()
                        .insert(name.to_owned(), from.clone());
                }
            }
        }
    }
    out
}

/// The module (file) a path names.
fn resolve(
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    reexports: &HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    depth: usize,
) -> Vec<String> {
    let mut at: Vec<String> = Vec::new();
    for (k, seg) in path.iter().enumerate() {
        let mut next = at.clone();
        next.push(seg.clone());
        if modules.contains(&next) {
            at = next;
            continue;
        }
        // Not a module: an item of `at`, or one it re-exports from elsewhere.
        if depth < 8
            && let Some(from) = reexports.get(&at).and_then(|r| r.get(seg))
        {
            let mut target = from.clone();
            target.push(seg.clone());
            target.extend(path[k + 1..].iter().cloned());
            return resolve(&target, modules, reexports, depth + 1);
        }
        break;
    }
    at
}

/// The cycles of a graph, as one edge of each strongly connected part (Tarjan's, iteratively
/// simple enough for a few hundred nodes: a node is in a cycle with `to` when `to` reaches it).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                stack.extend(edges.get(&n).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut out = Vec::new();
    for (a, tos) in edges {
        for b in tos {
            if reaches(b, a) {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

/// Who imports whom: node -> the nodes it imports.
type Edges = BTreeMap<String, BTreeSet<String>>;

/// The imports between top-level modules, and those between the files of each.
fn graph() -> (Edges, BTreeMap<String, Edges>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ephaptic/src");
    let srcs = sources(&root);
    let modules: BTreeSet<Vec<String>> = srcs.iter().map(|s| s.module.clone()).collect();
    let reexports = reexports(&srcs);
    let mut top = Edges::new();
    let mut inner: BTreeMap<String, Edges> = BTreeMap::new();
    for src in &srcs {
        let layer = src.module.first().cloned().unwrap_or_default();
        if FACADES.contains(&layer.as_str()) {
            continue;
        }
        for path in paths(src, &modules) {
            let target = resolve(&path, &modules, &reexports, 0);
            let Some(to_layer) = target.first() else {
                continue;
            };
            if *to_layer != layer {
                if !FACADES.contains(&to_layer.as_str()) {
                    top.entry(layer.clone())
                        .or_default()
                        .insert(to_layer.clone());
                }
            } else if target != src.module && target.len() > 1 {
                inner
                    .entry(layer.clone())
                    .or_default()
                    .entry(src.module.join("/"))
                    .or_default()
                    .insert(target.join("/"));
            }
        }
    }
    (top, inner)
}

#[test]
fn no_import_circle_between_the_runtimes_layers() {
    let (top, _) = graph();
    // The check sees the stack at all: the wire layer is imported, and the builder imports.
    assert!(top.values().any(|t| t.contains("wire")), "{top:?}");
    assert!(
        top.get("server").is_some_and(|t| t.contains("runtime")),
        "{top:?}"
    );
    let found = cycles(&top);
    assert!(
        found.is_empty(),
        "import circles between top-level modules of ephaptic/src (each edge is in one; \
         ARCHITECTURE.md says which layer may import which): {found:?}\nall imports: {top:#?}"
    );
}

#[test]
fn no_import_circle_between_the_files_of_a_layer() {
    let (_, inner) = graph();
    assert!(
        inner
            .get("runtime")
            .and_then(|r| r.get("runtime/dispatch"))
            .is_some_and(|t| t.contains("runtime/state")),
        "the check sees imports inside a layer: {inner:#?}"
    );
    let mut found = Vec::new();
    for (layer, edges) in &inner {
        for (a, b) in cycles(edges) {
            found.push(format!("{layer}: {a} -> {b}"));
        }
    }
    assert!(
        found.is_empty(),
        "import circles between the files of a layer (each edge is in one): {found:#?}"
    );
}

#[test]
fn the_check_finds_a_circle_when_there_is_one() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert!(cycles(&edges).is_empty());
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycles(&edges).len(), 3);
    // And the text reading behind it: a `super::` path in code counts, one in a comment or a
    // test module does not.
    let src = Source {
        module: vec!["runtime".into(), "state".into()],
        code: code_only(
            "use super::presence::Tracker;\n// use super::resume::Resumer;\n#[cfg(test)]\nmod tests {\n    use super::super::scope::current;\n}\n",
        ),
    };
    let modules: BTreeSet<Vec<String>> = [
        vec![],
        vec!["runtime".to_owned()],
        vec!["runtime".to_owned(), "presence".to_owned()],
        vec!["runtime".to_owned(), "state".to_owned()],
    ]
    .into_iter()
    .collect();
    let found = paths(&src, &modules);
    assert_eq!(
        found,
        [vec!["runtime", "presence", "Tracker"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()]
    );
}
