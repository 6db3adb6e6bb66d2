#[ephaptic::identity_loader]
async fn load() -> Option<String> {
    None
}

fn main() {}
