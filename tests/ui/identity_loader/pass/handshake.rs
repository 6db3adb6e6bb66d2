use ephaptic::Handshake;

#[ephaptic::identity_loader]
async fn load(token: Option<String>, handshake: Handshake) -> Option<String> {
    token.or_else(|| handshake.cookie("session").map(str::to_owned))
}

fn main() {}
