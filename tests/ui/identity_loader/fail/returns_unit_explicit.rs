#[ephaptic::identity_loader]
fn load(auth: Option<String>) -> () {
    let _ = auth;
}

fn main() {}
