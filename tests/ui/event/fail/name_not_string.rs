#[ephaptic::event(name = 1)]
pub struct Pong {
    pub ok: bool,
}

fn main() {}
