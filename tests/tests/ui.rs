//! Compile-time behaviour of the macros: what compiles, and what each mistake reports.
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p ephaptic-tests --test ui`,
//! then read every `.stderr`: an error must point at the user's token and say what to write.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    for dir in ["expose", "event", "model", "error", "identity_loader"] {
        t.pass(format!("ui/{dir}/pass/*.rs"));
        t.compile_fail(format!("ui/{dir}/fail/*.rs"));
    }
}
