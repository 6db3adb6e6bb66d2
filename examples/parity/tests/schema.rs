//! `schema.ts` (the TypeScript the frontends import) must match the Rust types. Regenerate with
//! `EPHAPTIC_TS_UPDATE=1 cargo test -p parity --test schema`.

use parity as _;

#[test]
fn schema_ts_is_current() {
    if let Err(e) = ephaptic_ts::check(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.ts")) {
        panic!("{e}");
    }
}

#[test]
fn schema_json_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.json");
    let fresh = ephaptic_ts::Exporter::new().json_schema().unwrap();
    if std::env::var_os("EPHAPTIC_TS_UPDATE").is_some() {
        std::fs::write(path, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(path)
        .expect("schema.json exists; generate it with EPHAPTIC_TS_UPDATE=1");
    assert_eq!(
        current, fresh,
        "schema.json is stale; regenerate with EPHAPTIC_TS_UPDATE=1 cargo test -p parity --test schema"
    );
}
