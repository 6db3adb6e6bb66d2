//! What `ephaptic_ts::check` and the in-process export say when something is wrong: a plain
//! serde type that would be typed `unknown` (with its opt-out), a file that does not exist yet,
//! and a stale file, whose diff shows the added function's lines and nothing else.

use std::path::PathBuf;

/// Serialisable, but not described for TypeScript: would be `unknown`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PlainTodo {
    pub title: String,
}

#[ephaptic::expose]
async fn create_plain(todo: PlainTodo) -> PlainTodo {
    todo
}

/// Dynamic on purpose: `unknown` is right, and allowed.
#[ephaptic::expose]
async fn echo(value: ephaptic::Value) -> Vec<ephaptic::Value> {
    vec![value]
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ephaptic-ts-check");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_plain_serde_type_fails_the_export_with_the_fix_unless_allowed() {
    let err = ephaptic_ts::render().unwrap_err();
    let msg = format!("{err:?}");
    assert!(matches!(err, ephaptic_ts::Error::Unknown { .. }), "{msg}");
    assert!(
        msg.contains("check::PlainTodo  (used by create_plain(todo), the result of create_plain)"),
        "{msg}"
    );
    assert!(
        msg.contains("#[ephaptic::model]") && msg.contains("allow_unknown(true)"),
        "{msg}"
    );
    assert!(
        !msg.contains("rmpv::Value"),
        "ephaptic::Value is unknown on purpose: {msg}"
    );

    let ts = ephaptic_ts::Exporter::new()
        .allow_unknown(true)
        .render()
        .unwrap();
    assert!(
        ts.contains("create_plain(todo: unknown): Promise<unknown>;"),
        "{ts}"
    );
    assert!(
        ts.contains("//   check::PlainTodo\n"),
        "the header still names it: {ts}"
    );
}

#[test]
fn the_first_check_writes_the_file_and_says_so() {
    let path = tmp("first.ts");
    let exporter = ephaptic_ts::Exporter::new().allow_unknown(true);
    let err = exporter.check(&path).unwrap_err();
    assert!(matches!(err, ephaptic_ts::Error::Created(_)), "{err}");
    assert!(format!("{err:?}").contains("did not exist, so it has been written now"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        exporter.render().unwrap()
    );
    exporter.check(&path).unwrap();
}

#[test]
fn a_stale_file_shows_only_the_missing_function() {
    let path = tmp("stale.ts");
    let exporter = ephaptic_ts::Exporter::new().allow_unknown(true);
    let fresh = exporter.render().unwrap();
    // The file as it was before `echo` existed: its lines in the service and the queries.
    let old: String = fresh
        .lines()
        .filter(|l| !l.contains(" echo("))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(fresh.lines().count(), old.lines().count() + 2);
    std::fs::write(&path, &old).unwrap();
    let err = exporter.check(&path).unwrap_err();
    let msg = format!("{err:?}");
    assert!(msg.contains("is stale"), "{msg}");
    let changed: Vec<&str> = msg
        .lines()
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
        .collect();
    assert_eq!(changed.len(), 2, "{msg}");
    assert!(changed.iter().all(|l| l.starts_with("+  echo(")), "{msg}");
}
