//! A binary whose declarations conflict: the server must refuse to start and name both sides
//! of every conflict, all in one message.

use ephaptic::{event, expose};

#[expose(name = "add")]
async fn add_one(a: i64) -> i64 {
    a + 1
}

#[expose(name = "add")]
async fn add_two(a: i64) -> i64 {
    a + 2
}

#[event(name = "Tick")]
#[derive(Debug)]
pub struct TickA {
    pub n: u32,
}

#[event(name = "Tick")]
#[derive(Debug)]
pub struct TickB {
    pub n: u64,
}

#[event(name = "itemMade")]
#[derive(Debug)]
pub struct ItemMade {
    pub id: u64,
}

#[expose(broadcast = ["itemMade"])]
async fn make_item(id: u64) -> u64 {
    id
}

#[ephaptic::identity_loader]
async fn first_loader(auth: Option<String>) -> Option<String> {
    auth
}

#[ephaptic::identity_loader]
async fn second_loader(auth: Option<u64>) -> Option<u64> {
    auth
}

#[test]
fn conflicting_declarations_stop_the_server_naming_both_places() {
    let err = ephaptic::Server::new()
        .try_router()
        .unwrap_err()
        .to_string();
    let this_file = file!();

    assert!(
        err.contains("two exposed functions are named 'add'"),
        "{err}"
    );
    assert!(
        err.contains("add_one") && err.contains("add_two"),
        "both functions are named: {err}"
    );
    assert!(
        err.contains(&format!("{this_file}:6")) && err.contains(&format!("{this_file}:11")),
        "with their lines: {err}"
    );

    assert!(err.contains("two events are named 'Tick'"), "{err}");
    assert!(err.contains("TickA") && err.contains("TickB"), "{err}");

    assert!(err.contains("'itemMade' is both an event"), "{err}");
    assert!(err.contains("two identity loaders are declared"), "{err}");
    assert!(
        err.contains("first_loader") && err.contains("second_loader"),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "two exposed functions are named 'add'")]
fn router_panics_with_the_same_message() {
    let _ = ephaptic::router();
}

#[tokio::test]
async fn serve_returns_the_conflict_as_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = ephaptic::Server::new()
        .serve_listener(listener)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("two exposed functions are named 'add'"),
        "{err}"
    );
}

#[test]
fn registering_a_linked_function_again_is_not_a_conflict_of_its_own() {
    // `register` of a function that link-time registration already found adds nothing: the
    // only conflicts are the declared ones above.
    let err = ephaptic::Server::new()
        .register::<make_item>()
        .try_router()
        .unwrap_err();
    assert!(!err.to_string().contains("'make_item'"), "{err}");
}
