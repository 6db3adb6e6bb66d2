#[ephaptic::event(recover = "replay")]
pub struct Changed {
    pub id: u64,
}

fn main() {}
