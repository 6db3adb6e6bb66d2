//! What the backplane's parts share from the bottom: the settings, a bound, the node's name,
//! and the lock helper.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a new connection waits at most for the subscription to its identity's channel.
pub(super) const READY_WAIT: Duration = Duration::from_secs(2);

/// The Redis settings of a server.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub url: String,
    /// Deliver `to(user)` events through the reference's channel, so that Python ephaptic
    /// servers on the same Redis send to and receive from this one.
    pub compat: bool,
    /// How often the liveness probe runs.
    pub probe_every: Duration,
}

impl Settings {
    pub fn new(url: String) -> Self {
        Settings {
            url,
            compat: false,
            probe_every: Duration::from_secs(5),
        }
    }
}

/// `url` with its passwords (the user's, and a Sentinel URL's `sentinel_password`) replaced by
/// `***`, for logs and the start line.
pub(crate) fn masked(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (url, None),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("sentinel_password", _)) => "sentinel_password=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url}{query}");
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return format!("{url}{query}");
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{query}"),
        // `redis://secret@host`: a bare password.
        None => format!("{scheme}://***@{host}{query}"),
    }
}

/// Whether a minute or more passed since the time `last` holds (seconds since the epoch; it is
/// set to now): for log lines written at most once a minute, whatever the rate of their cause.
pub(super) fn a_minute_since(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.saturating_sub(last.swap(now, Relaxed)) >= 60
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name for this server in messages, unique enough for a cluster's lifetime.
pub(super) fn node_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "rs-{:x}-{:x}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        SEQ.fetch_add(1, Relaxed)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        use super::masked;
        assert_eq!(
            masked("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(masked("redis://:s3cret@h:6379"), "redis://:***@h:6379");
        assert_eq!(masked("rediss://app:p@ss@h"), "rediss://app:***@h");
        assert_eq!(masked("redis://s3cret@h"), "redis://***@h");
        assert_eq!(
            masked("redis+sentinel://:pw@h1,h2/m?sentinel_username=s&sentinel_password=x"),
            "redis+sentinel://:***@h1,h2/m?sentinel_username=s&sentinel_password=***"
        );
        assert_eq!(
            masked("redis+sentinel://h1/m?sentinel_password=x"),
            "redis+sentinel://h1/m?sentinel_password=***"
        );
    }
}
