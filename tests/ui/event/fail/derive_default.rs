// A derived `Default` would give `code: 0`, disagreeing with the wire default.
#[ephaptic::event]
#[derive(Default)]
pub struct Ev {
    #[ephaptic(default = 1)]
    pub code: i64,
    pub message: String,
}

fn main() {}
