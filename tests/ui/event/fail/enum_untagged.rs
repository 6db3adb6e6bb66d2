// Untagged, a unit variant travels as nil, not a map.
#[ephaptic::event]
#[serde(untagged)]
pub enum Change {
    Added { id: u64 },
    Cleared,
}

fn main() {}
