#[ephaptic::event(name = "")]
pub struct Pong {
    pub ok: bool,
}

fn main() {}
