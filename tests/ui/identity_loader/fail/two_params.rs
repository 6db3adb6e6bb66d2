#[ephaptic::identity_loader]
async fn load(user: String, password: String) -> Option<String> {
    (password == "secret").then_some(user)
}

fn main() {}
