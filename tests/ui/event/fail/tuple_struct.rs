#[ephaptic::event]
pub struct Pong(pub bool);

fn main() {}
