//! Per-function rate limits (`#[expose(rate_limit = "2/m")]`): fixed windows per caller, the
//! caller being the identity when authenticated and the peer address otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::handler::FunctionDef;
use crate::identity::Identity;
use crate::session::Connection;

/// Windows kept before a sweep drops the expired ones.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Hash, PartialEq, Eq)]
enum Who {
    Identity(Identity),
    Peer(std::net::IpAddr),
    Connection(u64),
}

#[derive(Debug)]
struct Window {
    started: Instant,
    calls: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Limiter {
    windows: Mutex<HashMap<(&'static str, Who), Window>>,
}

impl Limiter {
    /// Counts a call; `Err(RATELIMIT)` when the caller has used up the function's window.
    pub fn check(&self, def: &FunctionDef, conn: &Connection) -> Result<(), Error> {
        if def.rate_limit.is_none() {
            return Ok(());
        }
        let who = match (conn.identity(), conn.peer()) {
            (Some(id), _) => Who::Identity(id.clone()),
            (None, Some(peer)) => Who::Peer(peer.ip()),
            (None, None) => Who::Connection(conn.id()),
        };
        self.check_at(def, who, Instant::now())
    }

    /// [`check`](Self::check) for `who` at the instant `now` (tests drive the clock).
    fn check_at(&self, def: &FunctionDef, who: Who, now: Instant) -> Result<(), Error> {
        let Some((limit, period)) = def.rate_limit else {
            return Ok(());
        };
        let period = Duration::from_secs(u64::from(period));
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| {
                now.duration_since(w.started) < period.max(Duration::from_secs(3600))
            });
        }
        let window = windows.entry((def.name, who)).or_insert(Window {
            started: now,
            calls: 0,
        });
        if now.duration_since(window.started) >= period {
            *window = Window {
                started: now,
                calls: 0,
            };
        }
        if window.calls < limit {
            window.calls += 1;
            return Ok(());
        }
        let left = period.saturating_sub(now.duration_since(window.started));
        let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let retry_after = retry_after.max(1);
        Err(Error::new(
            "RATELIMIT",
            format!("Rate Limit exceeded. Try again in {retry_after} seconds."),
        )
        .with_data(&RetryAfter { retry_after }))
    }
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

    #[test]
    fn a_window_allows_its_calls_then_says_when_to_retry() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let alice = || Who::Identity(Identity::from("alice"));
        assert!(limiter.check_at(&LIMITED, alice(), t0).is_ok());
        assert!(limiter.check_at(&LIMITED, alice(), t0).is_ok());
        let e = limiter
            .check_at(&LIMITED, alice(), t0 + Duration::from_millis(500))
            .unwrap_err();
        assert_eq!(retry_after(&e), 60, "59.5 s left rounds up");
        assert!(e.message().contains("60 seconds"), "{}", e.message());
        let e = limiter
            .check_at(&LIMITED, alice(), t0 + Duration::from_secs(59))
            .unwrap_err();
        assert_eq!(retry_after(&e), 1);
        assert!(
            limiter
                .check_at(&LIMITED, alice(), t0 + Duration::from_secs(60))
                .is_ok()
        );
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
