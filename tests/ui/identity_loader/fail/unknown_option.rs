#[ephaptic::identity_loader(cache = true)]
async fn load(auth: Option<String>) -> Option<String> {
    auth
}

fn main() {}
