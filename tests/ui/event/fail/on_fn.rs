#[ephaptic::event]
fn pong() {}

fn main() {}
