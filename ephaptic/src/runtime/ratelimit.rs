//! Per-function rate limits (`#[expose(rate_limit = "2/m")]`), per caller: the identity when
//! authenticated, the peer address otherwise.
//!
//! The rule is GCRA (the generic cell rate algorithm): `N` calls per `T` allow a burst of `N`,
//! then one call every `T / N`. Unlike a fixed window, it never lets a caller make `N` calls at
//! the end of one window and `N` more at the start of the next. The state per caller is one
//! instant (the "theoretical arrival time"), here or, with Redis, in one key that every server
//! updates with one atomic script ([`Remote`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::handler::{BoxFuture, FunctionDef};
use crate::identity::Identity;
use crate::session::Connection;

/// State kept before a sweep drops what has expired.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Hash, PartialEq, Eq)]
enum Who {
    Identity(Identity),
    Peer(std::net::IpAddr),
    Connection(u64),
}

impl Who {
    /// The caller's part of a shared key: `u:<identity key>`, `ip:<address>` or `c:<id>`.
    fn key(&self) -> String {
        match self {
            Who::Identity(id) => format!("u:{}", id.key()),
            Who::Peer(ip) => format!("ip:{ip}"),
            Who::Connection(id) => format!("c:{id}"),
        }
    }
}

/// A limiter shared by several servers (Redis): decides one call of `key` against `limit`
/// calls per `period`. Resolves to `Ok(None)` when allowed, `Ok(Some(wait))` when refused, and
/// `Err(())` when the shared store cannot be reached (the local limiter decides then).
pub(crate) trait Remote: Send + Sync + std::fmt::Debug {
    fn check(
        &self,
        key: String,
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

/// Per function and caller, the theoretical arrival time of the next call.
type Local = Arc<Mutex<HashMap<(&'static str, Who), Instant>>>;

#[derive(Debug, Default)]
pub(crate) struct Limiter {
    local: Local,
    remote: Option<Arc<dyn Remote>>,
}

impl Limiter {
    /// A limiter whose decisions are shared through `remote`.
    pub fn shared(remote: Arc<dyn Remote>) -> Self {
        Limiter {
            local: Local::default(),
            remote: Some(remote),
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
            (Some(id), _) => Who::Identity(id.clone()),
            (None, Some(peer)) => Who::Peer(peer.ip()),
            (None, None) => Who::Connection(conn.id()),
        };
        let Some(remote) = self.remote.clone() else {
            return match decide(&self.local, def, who, Instant::now()) {
                Ok(()) => Check::Allowed,
                Err(e) => Check::Refused(e),
            };
        };
        let (limit, period) = limits(def);
        let key = format!("{}:{}", def.name, who.key());
        let local = self.local.clone();
        Check::Shared(Box::pin(async move {
            match remote.check(key, limit, period).await {
                Ok(None) => Ok(()),
                Ok(Some(wait)) => Err(refusal(wait)),
                // The shared store is unreachable: this server decides alone.
                Err(()) => decide(&local, def, who, Instant::now()),
            }
        }))
    }

    /// Decides one call of `who` at the instant `now` on this server (tests drive the clock).
    #[cfg(test)]
    fn check_at(&self, def: &'static FunctionDef, who: Who, now: Instant) -> Result<(), Error> {
        decide(&self.local, def, who, now)
    }
}

/// Decides one call of `who` at `now` against this server's own state.
fn decide(local: &Local, def: &'static FunctionDef, who: Who, now: Instant) -> Result<(), Error> {
    let (limit, period) = limits(def);
    let decided = {
        let mut local = local.lock().unwrap_or_else(|e| e.into_inner());
        if local.len() >= SWEEP_AT {
            // A theoretical arrival time in the past is the same as no state at all.
            local.retain(|_, tat| *tat > now);
        }
        let tat = local.entry((def.name, who)).or_insert(now);
        gcra(*tat, now, limit, period).map(|next| *tat = next)
    };
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

    static LIMITED: FunctionDef = FunctionDef::new(
        "limited",
        Site {
            rust_name: "limited",
            module: "m",
            file: "f.rs",
            line: 1,
        },
        |_| unreachable!(),
    )
    .rate_limit(2, 60);

    fn retry_after(e: &Error) -> u64 {
        assert_eq!(e.code(), "RATELIMIT");
        e.data()["retry_after"].as_u64().unwrap()
    }

    fn alice() -> Who {
        Who::Identity(Identity::from("alice"))
    }

    #[test]
    fn a_burst_of_the_limit_then_one_call_per_share_of_the_period() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
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
        let t0 = Instant::now();
        for (s, allowed) in calls {
            let got = limiter.check_at(&LIMITED, alice(), t0 + Duration::from_secs(s));
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
    }
}
