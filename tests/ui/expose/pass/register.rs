use ephaptic::Exposed;

#[ephaptic::expose]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn main() {
    let _server = ephaptic::Server::new().register::<add>();
    let def = <add as Exposed>::def();
    assert_eq!(def.name, "add");
    assert_eq!(def.params, ["a", "b"]);
    // The function itself is still callable as written.
    let _future = add(1, 2);
}
