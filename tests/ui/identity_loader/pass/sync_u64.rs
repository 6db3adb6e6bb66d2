#[ephaptic::identity_loader]
fn load(auth: Option<String>) -> Option<u64> {
    auth?.parse().ok()
}

fn main() {}
