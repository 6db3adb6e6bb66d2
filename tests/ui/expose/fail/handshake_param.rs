use ephaptic::Handshake;

#[ephaptic::expose]
async fn agent(handshake: Handshake) -> Option<String> {
    handshake.header("user-agent").map(str::to_owned)
}

fn main() {}
