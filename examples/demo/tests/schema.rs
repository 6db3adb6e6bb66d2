//! `frontend/src/schema.ts` (the types both frontends import) must match the Rust types.
//! Regenerate with `EPHAPTIC_TS_UPDATE=1 cargo test -p demo --test schema`.

// Links the demo's functions, so the export sees them.
use demo as _;

#[test]
fn schema_ts_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/frontend/src/schema.ts");
    // The same naming rule as the server (`demo::server()`), so `createTodo` is typed as such.
    if let Err(e) = ephaptic_ts::Exporter::new()
        .server(demo::server())
        .check(path)
    {
        panic!("{e}");
    }
}
