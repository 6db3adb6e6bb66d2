#[ephaptic::event(name = "pong", name = "Pong")]
pub struct Pong {
    pub ok: bool,
}

fn main() {}
