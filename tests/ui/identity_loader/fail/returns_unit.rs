#[ephaptic::identity_loader]
async fn load(auth: Option<String>) {
    let _ = auth;
}

fn main() {}
