use ephaptic::Caller;

#[ephaptic::identity_loader]
async fn load(auth: Option<String>, caller: Caller) -> Option<String> {
    let _ = caller;
    auth
}

fn main() {}
