#[ephaptic::event]
pub struct Changed<T> {
    pub value: T,
}

fn main() {}
