//! The function lookup every call makes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::handler::FunctionDef;

/// The functions a server serves, by wire name, for the lookup every call makes: keyed by the
/// name's bytes as they arrive (no UTF-8 conversion) with a cheap FNV-1a hash instead of the
/// default DoS-resistant SipHash, which is not needed for a fixed set of keys chosen by the
/// application. Built once from the registry.
#[derive(Debug, Default)]
pub(crate) struct FunctionIndex {
    /// Each function and its index (its place in `names`).
    by_name: HashMap<&'static [u8], (usize, &'static FunctionDef), BuildHasherDefault<Fnv>>,
    names: Vec<&'static str>,
}

impl FunctionIndex {
    pub fn new(functions: &HashMap<&'static str, &'static FunctionDef>) -> Self {
        let mut names: Vec<&'static str> = functions.keys().copied().collect();
        names.sort_unstable();
        let by_name = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_bytes(), (i, functions[name])))
            .collect();
        FunctionIndex { by_name, names }
    }

    /// The function named `name`, and its index (for per-function figures kept in a `Vec`).
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<(usize, &'static FunctionDef)> {
        self.by_name.get(name).copied()
    }

    /// The functions' names, in the order of their indexes.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// FNV-1a, 64 bits.
#[derive(Debug)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    // A slice hashes its length first; one step for it instead of eight.
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x0100_0000_01b3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_published_test_vectors() {
        let hash = |bytes: &[u8]| {
            let mut h = Fnv::default();
            h.write(bytes);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
