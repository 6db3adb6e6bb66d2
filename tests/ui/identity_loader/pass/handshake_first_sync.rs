// The handshake alone, first, in a plain `fn`, by its full path.
#[ephaptic::identity_loader]
fn load(handshake: ephaptic::Handshake) -> Result<Option<u64>, String> {
    match handshake.header("x-user") {
        Some(id) => id.parse().map(Some).map_err(|e| format!("bad x-user: {e}")),
        None => Ok(None),
    }
}

fn main() {}
