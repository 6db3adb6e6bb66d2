//! Fails `cargo test` (and CI) when `web/src/schema.ts` no longer matches the Rust code, with a
//! diff. Regenerate it with `cargo ephaptic export web/src/schema.ts` (or
//! `EPHAPTIC_TS_UPDATE=1 cargo test`) and commit it.

#[test]
fn schema_ts_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/web/src/schema.ts");
    // Exporting through `template::server()` also links the library into this test.
    ephaptic_ts::Exporter::new()
        .server(template::server())
        .check(path)
        .unwrap();
}
