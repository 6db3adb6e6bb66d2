use ephaptic::Handshake;

#[ephaptic::identity_loader]
async fn load(a: Handshake, b: Handshake) -> Option<String> {
    a.cookie("x").or(b.cookie("y")).map(str::to_owned)
}

fn main() {}
