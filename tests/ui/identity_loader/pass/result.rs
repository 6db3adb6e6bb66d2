#[ephaptic::identity_loader]
async fn load(auth: String) -> Result<Option<String>, String> {
    if auth.is_empty() {
        Err("empty token".to_string())
    } else {
        Ok(Some(auth))
    }
}

fn main() {}
