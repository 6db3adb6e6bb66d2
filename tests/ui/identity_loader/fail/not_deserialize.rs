struct Token {
    value: String,
}

#[ephaptic::identity_loader]
async fn load(auth: Option<Token>) -> Option<String> {
    auth.map(|t| t.value)
}

fn main() {}
