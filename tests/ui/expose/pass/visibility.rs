mod api {
    #[ephaptic::expose]
    pub async fn public(a: i64) -> i64 {
        a
    }

    #[ephaptic::expose]
    async fn private(a: i64) -> i64 {
        a
    }

    #[ephaptic::expose]
    pub(crate) fn crate_visible() -> bool {
        true
    }

    pub fn call_private() {
        drop(private(1));
    }
}

fn main() {
    drop(api::public(1));
    api::call_private();
    let _ = api::crate_visible();
    let _ = ephaptic::Server::new()
        .register::<api::public>()
        .register::<api::crate_visible>();
}
