//! Per-function rate limits (`#[expose(rate_limit = "2/m")]`): fixed windows per caller, the
//! caller being the identity when authenticated and the peer address otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::error::Error;
use crate::identity::Identity;
use crate::registry::FunctionDef;

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
        let Some((limit, period)) = def.rate_limit else {
            return Ok(());
        };
        let period = Duration::from_secs(u64::from(period));
        let who = match (conn.identity(), conn.peer()) {
            (Some(id), _) => Who::Identity(id.clone()),
            (None, Some(peer)) => Who::Peer(peer.ip()),
            (None, None) => Who::Connection(conn.id()),
        };
        let now = Instant::now();
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
