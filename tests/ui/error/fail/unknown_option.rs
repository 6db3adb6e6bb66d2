#[ephaptic::error(code = "SOLD_OUT", status = 409)]
pub struct SoldOut;

fn main() {}
