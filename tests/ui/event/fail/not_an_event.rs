#[derive(serde::Serialize)]
pub struct Pong {
    pub ok: bool,
}

async fn ping() -> usize {
    ephaptic::emit(Pong { ok: true }).await.local
}

fn main() {
    let _ = ping();
}
