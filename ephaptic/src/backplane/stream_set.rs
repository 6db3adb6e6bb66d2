//! A bounded set of stream (or channel) names: named one by one up to a bound, past which it
//! stands for every stream.

use std::collections::HashSet;

/// Streams named one by one in a set of lost or to-be-resynced streams; past it, the set stands
/// for every stream.
pub(super) const NAMED_STREAMS: usize = 1024;

/// Streams by name (channels or keys), up to [`NAMED_STREAMS`] of them; past that, every
/// stream.
#[derive(Default)]
pub(super) struct StreamSet {
    pub named: HashSet<String>,
    pub all: bool,
}

impl StreamSet {
    pub fn add(&mut self, name: &str) {
        if self.all || self.named.contains(name) {
            return;
        }
        if self.named.len() >= NAMED_STREAMS {
            self.add_all();
        } else {
            self.named.insert(name.to_owned());
        }
    }

    pub fn add_all(&mut self) {
        self.all = true;
        self.named = HashSet::new();
    }

    pub fn merge(&mut self, other: StreamSet) {
        if other.all {
            self.add_all();
        } else {
            for name in &other.named {
                self.add(name);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.named.is_empty()
    }
}
