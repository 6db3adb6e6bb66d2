fn one() -> i64 {
    1
}

#[ephaptic::event]
pub struct Ev {
    #[ephaptic(default = 1)]
    #[serde(default = "one")]
    pub code: i64,
}

fn main() {}
