//! Handlers that live in a library crate, as in an app that splits its API into crates. Nothing
//! in the test binary calls into this crate: registration must come from linking it alone.

/// Says hello from another crate.
#[ephaptic::expose]
pub async fn cross_crate_hello(name: String) -> String {
    format!("hello {name}, from a linked crate")
}
