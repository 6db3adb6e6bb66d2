#[ephaptic::error(message = "Not enough funds.")]
pub struct InsufficientFunds {
    pub available: u64,
}

fn main() {}
