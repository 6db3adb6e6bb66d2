use ephaptic::Handshake;

#[ephaptic::identity_loader]
async fn load(auth: Option<String>, handshake: &Handshake) -> Option<String> {
    auth.or_else(|| handshake.cookie("session").map(str::to_owned))
}

fn main() {}
