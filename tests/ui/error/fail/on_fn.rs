#[ephaptic::error(code = "PAYMENT")]
fn payment_error() {}

fn main() {}
