pub struct User {
    pub id: u64,
}

#[ephaptic::identity_loader]
async fn load(token: Option<String>) -> Option<User> {
    token.map(|_| User { id: 1 })
}

fn main() {}
