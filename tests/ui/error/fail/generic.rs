#[ephaptic::error(code = "INVALID")]
pub struct Invalid<T> {
    pub value: T,
}

fn main() {}
