//! Per-function rate limits (`#[expose(rate_limit = "2/m")]`), per caller: the identity when
//! authenticated, the peer address otherwise.
//!
//! The rule is GCRA (the generic cell rate algorithm): `N` calls per `T` allow a burst of `N`,
//! then one call every `T / N`. Unlike a fixed window, it never lets a caller make `N` calls at
//! the end of one window and `N` more at the start of the next. The state per caller is one
//! instant (the "theoretical arrival time"), here or, with Redis, in one key that every server
//! updates with one atomic script ([`Remote`]).
//!
//! Callers are whoever connects, so the local state is bounded two ways. An entry is keyed by
//! a fixed-size digest of the caller ([`Digest`]), never by the identity itself: it costs the
//! same few dozen bytes for a 1 KiB identity as for `7`. And entries expire without a sweep:
//! each function's entries live in two generations one period `T` long ([`Table`]), and a
//! whole generation is dropped once every entry in it has a theoretical arrival time in the
//! past, which is the same as no entry at all. A call costs O(1) whatever the number of
//! callers, and an entry is gone at most two periods after its caller's last call.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::handler::{BoxFuture, FunctionDef};
use crate::identity::Identity;
use crate::session::Connection;

#[derive(Debug, Hash, PartialEq, Eq)]
enum Who<'a> {
    Identity(&'a Identity),
    Peer(std::net::IpAddr),
    Connection(u64),
}

impl Who<'_> {
    /// The caller's part of a shared key: `u:<identity key>`, `ip:<address>` or `c:<id>`.
    fn key(&self) -> String {
        match self {
            Who::Identity(id) => format!("u:{}", id.key()),
            Who::Peer(ip) => format!("ip:{ip}"),
            Who::Connection(id) => format!("c:{id}"),
        }
    }
}

/// A limiter shared by several servers (Redis): decides one call of `caller` (its [`Who::key`])
/// to `function` against `limit` calls per `period`. Resolves to `Ok(None)` when allowed,
/// `Ok(Some(wait))` when refused, and `Err(())` when the shared store cannot be reached (the
/// local limiter decides then).
pub(crate) trait Remote: Send + Sync + std::fmt::Debug {
    fn check(
        &self,
        function: &'static str,
        caller: String,
        limit: u32,
        period: Duration,
    ) -> BoxFuture<Result<Option<Duration>, ()>>;
}

/// How a call's rate limit was decided.
pub(crate) enum Check {
    Allowed,
    Refused(Error),
    /// Decided by the shared limiter: await it (in the call's own task).
    Shared(BoxFuture<Result<(), Error>>),
}

/// A caller, as the local limiter knows it: 128 bits of a keyed hash of its [`Who`].
///
/// Two callers that collide would share one limit (one of them refused early); nothing else.
/// It does not happen by chance: with `n` callers held the odds are about `n^2 / 2^129`, one
/// in 10^20 for a billion. Nor on purpose: the hash is keyed with random keys drawn when the
/// server starts, which a client never sees, so it cannot search for an identity that lands
/// on someone else's digest.
type Digest = u128;

/// The digest is already uniform and keyed: the map uses its bits as they are instead of
/// hashing them a second time.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used (a `Digest` key); this keeps the hasher total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Tats = HashMap<Digest, Instant, BuildHasherDefault<DigestHasher>>;

/// One function's callers, in two generations: `current` holds the callers seen since
/// `since`, `previous` those seen in the generation before (until they call again, which
/// moves them to `current`).
///
/// Why dropping a generation whole is exact: GCRA allows a call only while the new
/// theoretical arrival time lies at most one period ahead of it, so an entry set at `t` has
/// its TAT at or before `t + period`, and an expired TAT is the same as no entry. A generation
/// becomes `previous` at least one period after it began (the first call at or after
/// `since + period` rotates), so every entry of it was set before that call; it is dropped
/// at the next rotation, at least one period later, when all of its TATs have passed. A table
/// idle for two periods or more drops both generations at once.
#[derive(Debug)]
struct Table {
    def: &'static FunctionDef,
    period: Duration,
    since: Instant,
    current: Tats,
    previous: Tats,
    /// Entries looked at, for the tests that check a call does a bounded amount of work.
    visited: u64,
}

impl Table {
    fn new(def: &'static FunctionDef, period: Duration, now: Instant) -> Self {
        Table {
            def,
            period,
            since: now,
            current: Tats::default(),
            previous: Tats::default(),
            visited: 0,
        }
    }

    /// Starts a new generation when the current one is a period old. Dropping a map of plain
    /// values frees its memory at once (one deallocation, no walk over the entries), and the
    /// new `current` starts empty, so memory goes back as callers leave.
    fn rotate(&mut self, now: Instant) {
        let Some(age) = now.checked_duration_since(self.since) else {
            return;
        };
        if age < self.period {
            return;
        }
        let current = std::mem::take(&mut self.current);
        self.previous = if age < self.period * 2 {
            current
        } else {
            Tats::default()
        };
        self.since = now;
    }

    /// One GCRA step for `who`; its entry moves to the current generation.
    fn check(&mut self, who: Digest, now: Instant, limit: u32) -> Result<(), Duration> {
        self.visited += 1;
        let tat = match self.current.get(&who) {
            Some(tat) => Some(*tat),
            None => {
                self.visited += 1;
                self.previous.remove(&who)
            }
        };
        match gcra(tat.unwrap_or(now), now, limit, self.period) {
            Ok(next) => {
                self.current.insert(who, next);
                Ok(())
            }
            Err(wait) => {
                // Refused: the state is unchanged, but it leaves `previous`, which may be
                // dropped before this TAT passes.
                if let Some(tat) = tat {
                    self.current.insert(who, tat);
                }
                Err(wait)
            }
        }
    }

    fn entries(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// The bytes the two maps hold (their capacity, whatever is in them).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Digest, Instant)>() + 1;
        (self.current.capacity() + self.previous.capacity()) * slot
    }
}

/// This server's own state: one [`Table`] per rate-limited function that has been called.
/// Functions are few and fixed at build time; a scan over them is cheaper than a map.
#[derive(Debug, Default)]
struct Local {
    tables: Vec<Table>,
}

impl Local {
    fn check(
        &mut self,
        def: &'static FunctionDef,
        who: Digest,
        now: Instant,
    ) -> Result<(), Duration> {
        let (limit, period) = limits(def);
        // Every table, not only this function's: a function nobody calls any more must
        // still let its callers go.
        for table in &mut self.tables {
            table.rotate(now);
        }
        let table = match self.tables.iter().position(|t| std::ptr::eq(t.def, def)) {
            Some(i) => &mut self.tables[i],
            None => {
                self.tables.push(Table::new(def, period, now));
                self.tables.last_mut().expect("just pushed")
            }
        };
        table.check(who, now, limit)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Limiter {
    local: Arc<Mutex<Local>>,
    /// The keys of the digest, drawn once per limiter.
    keys: RandomState,
    remote: Option<Arc<dyn Remote>>,
}

impl Limiter {
    /// A limiter whose decisions are shared through `remote`.
    pub fn shared(remote: Arc<dyn Remote>) -> Self {
        Limiter {
            remote: Some(remote),
            ..Limiter::default()
        }
    }

    /// Counts a call against the function's limit.
    #[inline]
    pub fn check(&self, def: &'static FunctionDef, conn: &Connection) -> Check {
        if def.rate_limit.is_none() {
            return Check::Allowed;
        }
        self.check_slow(def, conn)
    }

    #[cold]
    fn check_slow(&self, def: &'static FunctionDef, conn: &Connection) -> Check {
        let who = match (conn.identity(), conn.peer()) {
            (Some(id), _) => Who::Identity(id),
            (None, Some(peer)) => Who::Peer(peer.ip()),
            (None, None) => Who::Connection(conn.id()),
        };
        let digest = self.digest(&who);
        let Some(remote) = self.remote.clone() else {
            return match decide(&self.local, def, digest, Instant::now()) {
                Ok(()) => Check::Allowed,
                Err(e) => Check::Refused(e),
            };
        };
        let (limit, period) = limits(def);
        let caller = who.key();
        let local = self.local.clone();
        Check::Shared(Box::pin(async move {
            match remote.check(def.name, caller, limit, period).await {
                Ok(None) => Ok(()),
                Ok(Some(wait)) => Err(refusal(wait)),
                // The shared store is unreachable: this server decides alone.
                Err(()) => decide(&local, def, digest, Instant::now()),
            }
        }))
    }

    /// Two SipHash-1-3 runs (std's `RandomState`) under the limiter's keys, told apart by a
    /// leading byte: 128 bits, whatever the caller's size.
    fn digest(&self, who: &Who<'_>) -> Digest {
        let half = |tag: u8| {
            let mut h = self.keys.build_hasher();
            h.write_u8(tag);
            who.hash(&mut h);
            h.finish()
        };
        (Digest::from(half(0)) << 64) | Digest::from(half(1))
    }

    /// How many callers this server holds limiter state for (some may have expired and wait
    /// for the next call to be dropped).
    pub fn entries(&self) -> usize {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.tables.iter().map(Table::entries).sum()
    }

    /// Decides one call of `who` at the instant `now` on this server (tests drive the clock).
    #[cfg(test)]
    fn check_at(&self, def: &'static FunctionDef, who: Who<'_>, now: Instant) -> Result<(), Error> {
        decide(&self.local, def, self.digest(&who), now)
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.tables.iter().map(Table::bytes).sum()
    }

    #[cfg(test)]
    fn visited(&self) -> u64 {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.tables.iter().map(|t| t.visited).sum()
    }
}

/// Decides one call of `who` at `now` against this server's own state.
fn decide(
    local: &Mutex<Local>,
    def: &'static FunctionDef,
    who: Digest,
    now: Instant,
) -> Result<(), Error> {
    let decided = local
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check(def, who, now);
    decided.map_err(refusal)
}

fn limits(def: &FunctionDef) -> (u32, Duration) {
    let (limit, seconds) = def.rate_limit.unwrap_or((1, 1));
    (limit.max(1), Duration::from_secs(u64::from(seconds.max(1))))
}

/// One GCRA step: the new theoretical arrival time when the call is allowed, or how long to
/// wait.
fn gcra(tat: Instant, now: Instant, limit: u32, period: Duration) -> Result<Instant, Duration> {
    let interval = period / limit;
    let next = tat.max(now) + interval;
    // Allowed unless `next` lies more than a whole period ahead.
    match (next - now).checked_sub(period) {
        Some(wait) if !wait.is_zero() => Err(wait),
        _ => Ok(next),
    }
}

/// `RATELIMIT`, with `retry_after` in whole seconds (at least 1), as the reference sends it.
fn refusal(wait: Duration) -> Error {
    let retry_after = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    Error::new(
        "RATELIMIT",
        format!("Rate Limit exceeded. Try again in {retry_after} seconds."),
    )
    .with_data(&RetryAfter { retry_after })
}

#[derive(serde::Serialize)]
struct RetryAfter {
    retry_after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::defs::Site;

    const fn def(name: &'static str, calls: u32, seconds: u32) -> FunctionDef {
        FunctionDef::new(
            name,
            Site {
                rust_name: name,
                module: "m",
                file: "f.rs",
                line: 1,
            },
            |_| unreachable!(),
        )
        .rate_limit(calls, seconds)
    }

    static LIMITED: FunctionDef = def("limited", 2, 60);
    static FAST: FunctionDef = def("fast", 5, 1);

    fn retry_after(e: &Error) -> u64 {
        assert_eq!(e.code(), "RATELIMIT");
        e.data()["retry_after"].as_u64().unwrap()
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    /// `n` distinct string identities of `len` bytes each.
    fn identities(n: usize, len: usize) -> Vec<Identity> {
        (0..n)
            .map(|i| Identity::from(format!("{i:0>len$}")))
            .collect()
    }

    #[test]
    fn a_burst_of_the_limit_then_one_call_per_share_of_the_period() {
        let limiter = Limiter::default();
        let alice = Identity::from("alice");
        let alice = || Who::Identity(&alice);
        let t0 = Instant::now();
        let at = |s| secs(t0, s);
        assert!(limiter.check_at(&LIMITED, alice(), t0).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), t0).is_ok());
        let e = limiter.check_at(&LIMITED, alice(), at(0.5)).unwrap_err();
        assert_eq!(
            retry_after(&e),
            30,
            "29.5 s until the next share of the minute"
        );
        assert!(e.message().contains("30 seconds"), "{}", e.message());
        let e = limiter.check_at(&LIMITED, alice(), at(29.0)).unwrap_err();
        assert_eq!(retry_after(&e), 1);
        assert!(limiter.check_at(&LIMITED, alice(), at(30.0)).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), at(30.0)).is_err());
    }

    #[test]
    fn no_double_burst_at_a_window_edge() {
        // A fixed window allows 2 at 59 s and 2 more at 61 s; GCRA allows the burst once.
        // (second, allowed); at 200 s, after idling a whole period, the full burst is back.
        let calls = [
            (59, true),
            (59, true),
            (61, false),
            (89, true),
            (89, false),
            (200, true),
            (200, true),
            (200, false),
        ];
        let limiter = Limiter::default();
        let alice = Identity::from("alice");
        let t0 = Instant::now();
        for (s, allowed) in calls {
            let got = limiter.check_at(&LIMITED, Who::Identity(&alice), secs(t0, s.into()));
            assert_eq!(got.is_ok(), allowed, "the call at {s} s");
        }
    }

    #[test]
    fn callers_are_counted_apart() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let ip = |n| Who::Peer(std::net::IpAddr::from([127, 0, 0, n]));
        for _ in 0..2 {
            assert!(limiter.check_at(&LIMITED, ip(1), t0).is_ok());
        }
        assert!(limiter.check_at(&LIMITED, ip(1), t0).is_err());
        assert!(limiter.check_at(&LIMITED, ip(2), t0).is_ok());
        assert!(limiter.check_at(&LIMITED, Who::Connection(9), t0).is_ok());
        let seven = Identity::from(7);
        let seven_str = Identity::from("7");
        assert!(
            limiter
                .check_at(&LIMITED, Who::Identity(&seven), t0)
                .is_ok()
        );
        assert!(
            limiter
                .check_at(&LIMITED, Who::Identity(&seven), t0)
                .is_ok()
        );
        assert!(
            limiter
                .check_at(&LIMITED, Who::Identity(&seven_str), t0)
                .is_ok(),
            "the integer 7 and the string \"7\" are two callers"
        );
        assert_eq!(limiter.entries(), 5);
    }

    #[test]
    fn a_hundred_thousand_callers_are_gone_two_periods_after_their_last_call() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let crowd = identities(100_000, 8);
        for id in &crowd {
            assert!(limiter.check_at(&LIMITED, Who::Identity(id), t0).is_ok());
        }
        let peak = limiter.bytes();
        assert_eq!(limiter.entries(), 100_000);
        // Their TATs (t0 + 30 s) have passed; one period on, they wait in `previous`.
        assert!(
            limiter
                .check_at(&LIMITED, Who::Connection(1), secs(t0, 61.0))
                .is_ok()
        );
        assert_eq!(limiter.entries(), 100_001);
        // Two periods on, a call by anyone drops them.
        assert!(
            limiter
                .check_at(&LIMITED, Who::Connection(2), secs(t0, 121.0))
                .is_ok()
        );
        let (entries, bytes) = (limiter.entries(), limiter.bytes());
        assert!(entries <= 2, "{entries} entries left");
        assert!(
            bytes * 1000 < peak,
            "{bytes} bytes held of a peak of {peak}"
        );
        println!(
            "100,000 callers: {peak} bytes at the peak; {entries} entries, {bytes} bytes after"
        );
    }

    #[test]
    fn an_idle_function_lets_its_callers_go_when_another_is_called() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for n in 0..10_000 {
            assert!(limiter.check_at(&LIMITED, Who::Connection(n), t0).is_ok());
        }
        assert!(
            limiter
                .check_at(&FAST, Who::Connection(0), secs(t0, 120.0))
                .is_ok()
        );
        assert_eq!(limiter.entries(), 1, "only the `fast` caller");
    }

    #[test]
    fn an_entry_costs_the_same_whatever_the_identity_size() {
        assert_eq!(std::mem::size_of::<Digest>(), 16);
        let t0 = Instant::now();
        let held = |len| {
            let limiter = Limiter::default();
            for id in &identities(1000, len) {
                assert!(limiter.check_at(&LIMITED, Who::Identity(id), t0).is_ok());
            }
            (limiter.entries(), limiter.bytes())
        };
        let (short, long) = (held(4), held(1000));
        assert_eq!(short, long, "1,000 callers of 4 bytes, then of 1,000 bytes");
        let per_entry = long.1 / long.0;
        assert!(per_entry <= 64, "{per_entry} bytes per entry");
        println!("bytes per entry (capacity included): {per_entry}");
    }

    #[test]
    fn a_call_among_a_hundred_thousand_stale_entries_looks_at_two() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for n in 0..100_000 {
            assert!(limiter.check_at(&LIMITED, Who::Connection(n), t0).is_ok());
        }
        // Rotated into `previous` and expired, but not yet dropped: the worst moment.
        let at = secs(t0, 90.0);
        assert!(
            limiter
                .check_at(&LIMITED, Who::Connection(u64::MAX), secs(t0, 61.0))
                .is_ok()
        );
        assert_eq!(limiter.entries(), 100_001);
        let before = limiter.visited();
        for n in 0..1000 {
            let _ = limiter.check_at(&LIMITED, Who::Connection(200_000 + n % 7), at);
        }
        let visited = limiter.visited() - before;
        assert!(
            visited <= 2 * 1000,
            "{visited} entries looked at by 1,000 calls"
        );
        // Still exact for a stale caller: its expired entry is as good as none.
        assert!(limiter.check_at(&LIMITED, Who::Connection(5), at).is_ok());
        assert!(limiter.check_at(&LIMITED, Who::Connection(5), at).is_ok());
        assert!(limiter.check_at(&LIMITED, Who::Connection(5), at).is_err());
    }

    #[test]
    fn limits_hold_exactly_across_generations() {
        let limiter = Limiter::default();
        let alice = Identity::from("alice");
        let alice = || Who::Identity(&alice);
        let t0 = Instant::now();
        let at = |s| secs(t0, s);
        assert!(limiter.check_at(&LIMITED, Who::Connection(0), t0).is_ok());
        // The burst at the end of the first generation.
        assert!(limiter.check_at(&LIMITED, alice(), at(59.0)).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), at(59.0)).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), at(59.0)).is_err());
        // Someone else starts a new generation: alice's entry is in `previous` now.
        assert!(
            limiter
                .check_at(&LIMITED, Who::Connection(1), at(61.0))
                .is_ok()
        );
        let e = limiter.check_at(&LIMITED, alice(), at(61.0)).unwrap_err();
        assert_eq!(retry_after(&e), 28);
        assert!(limiter.check_at(&LIMITED, alice(), at(88.5)).is_err());
        // One share of the period (30 s) after the burst's TAT.
        assert!(limiter.check_at(&LIMITED, alice(), at(89.0)).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), at(89.0)).is_err());
        // A refused call kept her entry; the next generation still knows it.
        assert!(
            limiter
                .check_at(&LIMITED, Who::Connection(1), at(121.0))
                .is_ok()
        );
        assert!(limiter.check_at(&LIMITED, alice(), at(121.0)).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), at(121.0)).is_err());
    }

    #[test]
    fn decisions_match_a_limiter_that_never_forgets() {
        // One caller's calls at irregular times over 40 periods (idle gaps of one and of
        // several periods among them), while strangers start generations all along: every
        // decision must be the one the plain GCRA on a single remembered TAT makes.
        for def in [&LIMITED, &FAST] {
            let limiter = Limiter::default();
            let (limit, period) = limits(def);
            let t0 = Instant::now();
            let mut now = t0;
            let mut tat: Option<Instant> = None;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let (mut allowed, mut refused) = (0, 0);
            for step in 0..4000u64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let gap = match seed % 100 {
                    0 => period * 3,
                    1 => period + period / 7,
                    _ => period * u32::try_from(seed % 13).unwrap() / 40,
                };
                now += gap;
                let _ = limiter.check_at(def, Who::Connection(1_000_000 + step), now);
                for _ in 0..seed % 4 {
                    let model = gcra(tat.unwrap_or(now), now, limit, period);
                    let got = limiter.check_at(def, Who::Connection(0), now);
                    assert_eq!(got.is_ok(), model.is_ok(), "step {step}");
                    if let Ok(next) = model {
                        tat = Some(next);
                        allowed += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
            assert!(allowed > 100 && refused > 100, "{allowed} / {refused}");
            assert!(limiter.entries() < 4000, "strangers expire too");
        }
    }
}
