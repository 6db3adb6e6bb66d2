#[ephaptic::event]
pub struct Ping;

fn main() {}
