//! The process-wide memory budget for buffered bytes: what waits to be written to clients and
//! what is read from them before a message is whole. Each connection buffers its first
//! [`FREE_PER_CONNECTION`] bytes without asking (so an ordinary connection, whose queue and
//! unfinished message stay small, never touches the shared counter: no contended atomic on the
//! hot path); only what lies beyond is charged here. When the budget is spent, the connection
//! asking for more is the one refused: its events go to the slow-client policy, its unfinished
//! message closes it. A few clients cannot make the server buffer the whole machine.
//!
//! It also gives the memory back. glibc's malloc keeps what large buffers freed (in arenas,
//! below the top of the heap) rather than returning it to the system, so after a burst of
//! large messages a server's RSS would stay near its peak long after the clients left, and the
//! next burst would start from there. Once bytes were charged here, the budget asks glibc to
//! trim (`malloc_trim`, on a blocking thread, at most once a second) when the charge falls
//! back to zero and when a connection that held them closes. Servers that never buffer more
//! than 64 KiB per connection never trim.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one connection buffers (queued outbound bytes, and an unfinished inbound message, each)
/// before its bytes count against the shared budget.
pub(crate) const FREE_PER_CONNECTION: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    /// On a cache line of its own: connections far behind touch it from every core.
    used: Padded,
    /// How many times a connection was refused for the budget (closed or had events dropped).
    pub refusals: AtomicU64,
    trim: Arc<Trim>,
}

/// When the allocator was last asked to give memory back, shared with the task that asks.
#[derive(Debug, Default)]
pub(crate) struct Trim {
    /// Bytes were charged since the last trim.
    dirty: AtomicBool,
    /// A trim is waiting to run.
    scheduled: AtomicBool,
    last: Mutex<Option<Instant>>,
    /// How many trims ran.
    pub done: AtomicU64,
}

/// An atomic alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicUsize);

impl std::ops::Deref for Padded {
    type Target = AtomicUsize;
    fn deref(&self) -> &AtomicUsize {
        &self.0
    }
}

/// The least time between two trims.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// How long a trim waits for what is being freed around it (a closing connection's buffers).
const TRIM_DELAY: Duration = Duration::from_millis(200);

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: Padded::default(),
            refusals: AtomicU64::new(0),
            trim: Arc::default(),
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
                Ok(_) => {
                    self.trim.dirty.store(true, Ordering::Relaxed);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    /// Charges `bytes` whatever the limit (bytes already held that must be counted, such as
    /// a reply that waits for room anyway).
    pub fn force_charge(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        self.trim.dirty.store(true, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: usize) {
        if bytes > 0 && self.used.fetch_sub(bytes, Ordering::Relaxed) == bytes {
            // Back to nothing charged: what the large buffers held may go back.
            self.trim_soon();
        }
    }

    /// Something that held charged bytes at some point closed: its buffers (which may have
    /// grown with those bytes, and outlive the charge) are being freed, so trim soon.
    pub fn holder_closed(&self) {
        self.trim.dirty.store(true, Ordering::Relaxed);
        self.trim_soon();
    }

    /// How many times the allocator was asked to give memory back.
    pub fn trims(&self) -> u64 {
        self.trim.done.load(Ordering::Relaxed)
    }

    /// Schedules one trim if anything was charged since the last (requests coalesce), at most
    /// once per [`TRIM_EVERY`], a moment after the request so that what is being freed around
    /// it (a closing connection's buffers) is freed first.
    fn trim_soon(&self) {
        let trim = &self.trim;
        if !trim.dirty.load(Ordering::Relaxed) || trim.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            trim.scheduled.store(false, Ordering::Release);
            return;
        };
        let since = lock(&trim.last).map(|t| t.elapsed());
        let wait = match since {
            Some(since) if since < TRIM_EVERY => (TRIM_EVERY - since).max(TRIM_DELAY),
            _ => TRIM_DELAY,
        };
        let trim = trim.clone();
        runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            // Cleared first: what is charged from here on asks for the next trim.
            trim.dirty.store(false, Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(give_back).await;
            *lock(&trim.last) = Some(Instant::now());
            trim.done.fetch_add(1, Ordering::Relaxed);
            trim.scheduled.store(false, Ordering::Release);
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks the allocator to return the memory it holds free to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn give_back() {
    // SAFETY: `malloc_trim` has no preconditions; it only walks glibc's own arenas (under
    // their locks) and returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl, macOS, Windows) give freed memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back() {}

/// Fixes glibc's mmap threshold at its default (128 KiB), once per process, unless the
/// environment tunes malloc itself (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, ...).
///
/// By default glibc raises the threshold to the largest block freed so far (up to 32 MiB), so
/// after one large message every buffer up to that size comes from the heap instead of its own
/// mapping, and a burst of them leaves the heap fragmented: measured, 8 to 140 MiB kept after
/// the clients of such a burst left, which `malloc_trim` does not get back. With the threshold
/// fixed, a buffer past 128 KiB is mapped on its own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn tune_allocator() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let tuned = std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES")
        });
        if !tuned {
            // SAFETY: `mallopt` has no preconditions; it sets a parameter of glibc's allocator
            // (under its own lock) and reports failure by its return value, ignored here.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn tune_allocator() {}

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
