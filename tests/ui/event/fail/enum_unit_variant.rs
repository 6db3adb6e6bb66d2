// Externally tagged, a unit variant travels as a bare string, not a map.
#[ephaptic::event]
pub enum Change {
    Added { id: u64 },
    Cleared,
    Renamed(String),
}

fn main() {}
