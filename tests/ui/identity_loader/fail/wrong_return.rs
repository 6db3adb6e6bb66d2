#[ephaptic::identity_loader]
async fn load(auth: Option<String>) -> String {
    auth.unwrap_or_default()
}

fn main() {}
