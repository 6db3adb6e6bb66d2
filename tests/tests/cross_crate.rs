//! Functions exposed in another crate are served once that crate is linked; the documented way
//! to make sure the linker keeps it is `use that_crate as _;`.

mod common;

use common::*;

use ephaptic_test_handlers as _;

#[tokio::test]
async fn a_function_from_a_linked_crate_is_served() {
    let url = start(ephaptic::Server::new()).await;
    let mut c = Client::connect(&url).await;
    assert_eq!(
        c.ok("cross_crate_hello", vec![v("ana")]).await,
        v("hello ana, from a linked crate")
    );
}
