//! `ephaptic::naming!` is the one naming setting: the server and the exporter read it, and a
//! server's own `rename_all` wins over it (for that server and an exporter given that server).

ephaptic::naming!(CamelCase);

#[ephaptic::expose]
async fn create_todo(title: String) -> String {
    title
}

#[ephaptic::expose(name = "keep_me")]
async fn explicit() -> bool {
    true
}

fn names(server: &ephaptic::Server) -> Vec<&'static str> {
    let intro = server.introspect().unwrap();
    intro.functions.iter().map(|f| f.name).collect()
}

#[test]
fn the_declared_rule_names_functions_for_the_server_and_the_export() {
    assert_eq!(names(&ephaptic::Server::new()), ["createTodo", "keep_me"]);
    assert_eq!(
        ephaptic::introspect().unwrap().naming,
        ephaptic::Naming::CamelCase
    );
    let ts = ephaptic_ts::render().unwrap();
    assert!(
        ts.contains("  createTodo(title: string): Promise<string>;"),
        "{ts}"
    );
}

#[test]
fn a_servers_own_rule_wins() {
    let server = ephaptic::Server::new().rename_all(ephaptic::Naming::AsWritten);
    assert_eq!(names(&server), ["create_todo", "keep_me"]);
    let ts = ephaptic_ts::Exporter::new()
        .server(server)
        .render()
        .unwrap();
    assert!(ts.contains("  create_todo(title: string)"), "{ts}");
    let ts = ephaptic_ts::Exporter::new()
        .rename_all(ephaptic::Naming::AsWritten)
        .render()
        .unwrap();
    assert!(ts.contains("  create_todo(title: string)"), "{ts}");
}
