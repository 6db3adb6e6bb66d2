//! The process-wide memory budget for buffered bytes: what waits to be written to clients and
//! what is read from them before a message is whole. Each connection buffers its first
//! [`FREE_PER_CONNECTION`] bytes without asking (so an ordinary connection, whose queue and
//! unfinished message stay small, never touches the shared counter: no contended atomic on the
//! hot path); only what lies beyond is charged here. When the budget is spent, the connection
//! asking for more is the one refused: its events go to the slow-client policy, its unfinished
//! message closes it. A few clients cannot make the server buffer the whole machine.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What one connection buffers (queued outbound bytes, and an unfinished inbound message, each)
/// before its bytes count against the shared budget.
pub(crate) const FREE_PER_CONNECTION: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// How many times a connection was refused for the budget (closed or had events dropped).
    pub refusals: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// An unlimited budget (tests, benches).
    #[cfg(test)]
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes` if they fit; `false` (nothing charged) when they would exceed the limit.
    pub fn try_charge(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(bytes).filter(|&n| n <= self.limit) else {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Charges `bytes` whatever the limit (bytes already held that must be counted, such as
    /// a reply that waits for room anyway).
    pub fn force_charge(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

/// The part of `held` bytes that lies beyond a connection's free allowance.
pub(crate) fn chargeable(held: usize) -> usize {
    held.saturating_sub(FREE_PER_CONNECTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_the_limit_and_come_back() {
        let b = MemoryBudget::new(1000);
        assert!(b.try_charge(600));
        assert!(!b.try_charge(500), "1,100 bytes exceed the limit");
        assert_eq!(b.used(), 600);
        assert_eq!(b.refusals.load(Ordering::Relaxed), 1);
        assert!(b.try_charge(400));
        b.release(1000);
        assert_eq!(b.used(), 0);
        assert!(MemoryBudget::unlimited().try_charge(usize::MAX));
        assert_eq!(chargeable(FREE_PER_CONNECTION + 5), 5);
        assert_eq!(chargeable(10), 0);
    }
}
