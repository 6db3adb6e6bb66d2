#[derive(serde::Deserialize)]
struct Token {
    token: String,
}

#[ephaptic::identity_loader]
async fn load(auth: Option<Token>) -> Option<String> {
    let token = auth?.token;
    token.strip_prefix("user-").map(str::to_owned)
}

fn main() {}
