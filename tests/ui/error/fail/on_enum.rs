#[ephaptic::error(code = "PAYMENT")]
pub enum PaymentError {
    Declined,
    Expired,
}

fn main() {}
