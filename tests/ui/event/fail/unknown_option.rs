#[ephaptic::event(nmae = "pong")]
pub struct Pong {
    pub ok: bool,
}

fn main() {}
