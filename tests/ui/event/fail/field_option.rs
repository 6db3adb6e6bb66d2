#[ephaptic::event]
pub struct Ev {
    #[ephaptic(rename = "c")]
    pub code: i64,
    #[ephaptic(default = 1, default = 2)]
    pub other: i64,
    #[ephaptic]
    pub bare: i64,
}

#[ephaptic::event]
#[serde(tag = "kind")]
pub enum Change {
    Added {
        #[ephaptic(default = 1)]
        id: u64,
    },
}

fn main() {}
