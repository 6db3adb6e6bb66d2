//! Two different `ephaptic::naming!` rules in one build stop it, naming both.

mod a {
    ephaptic::naming!(CamelCase);
}
mod b {
    ephaptic::naming!(AsWritten);
}
mod c {
    // The same rule again is no conflict.
    ephaptic::naming!(CamelCase);
}

#[ephaptic::expose]
async fn ping() -> bool {
    true
}

#[test]
fn two_different_rules_are_a_start_up_conflict() {
    let err = ephaptic::introspect().unwrap_err().to_string();
    assert!(err.contains("different naming rules are declared"), "{err}");
    assert!(
        err.contains("CamelCase") && err.contains("AsWritten"),
        "{err}"
    );
    assert_eq!(err.matches("naming rules").count(), 1, "{err}");
    assert_eq!(
        err.matches("CamelCase").count(),
        1,
        "the same rule twice is listed once: {err}"
    );
}
