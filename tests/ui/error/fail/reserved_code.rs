#[ephaptic::error(code = "INTERNAL", message = "Something broke.")]
pub struct Broken;

fn main() {}
