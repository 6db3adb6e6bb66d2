#[ephaptic::error(code = "INSUFFICIENT_FUNDS", message = "Not enough funds.")]
pub struct InsufficientFunds {
    pub available: u64,
    pub needed: u64,
}

#[ephaptic::error(code = "BAD_PAIR")]
pub struct BadPair(pub u32, pub u32);

fn main() {
    let e: ephaptic::Error = InsufficientFunds {
        available: 1,
        needed: 2,
    }
    .into();
    assert_eq!(e.code(), "INSUFFICIENT_FUNDS");
    let _: ephaptic::Error = BadPair(1, 2).into();
}
