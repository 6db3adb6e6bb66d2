use ephaptic::{Event, Recover};

/// Only the newest matters: a client that missed several gets the last one.
#[ephaptic::event(recover = "latest")]
pub struct ListChanged {
    pub version: u64,
}

/// Never replayed.
#[ephaptic::event(recover = "none", name = "typing")]
pub struct Typing {
    pub user: String,
}

#[ephaptic::event]
pub struct Saved {
    pub id: u64,
}

fn main() {
    assert_eq!(ListChanged::RECOVER, Recover::Latest);
    assert_eq!(Typing::RECOVER, Recover::None);
    assert_eq!(Saved::RECOVER, Recover::Stream);
    assert_eq!(<&Typing as Event>::RECOVER, Recover::None);
}
