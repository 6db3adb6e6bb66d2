//! How long a connection's identity holds: its expiry, whether its client refreshes, and what
//! a refresh needs (the upgrade request, which the identity loader sees again, and the timer
//! that asks for fresh credentials and ends the session without them). Only connections whose
//! loader returned an [`Expiring`](crate::Expiring) identity keep anything here beyond a word.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;

use crate::handshake::Handshake;

/// Close code for a session the server ended: logged out, revoked, its credentials expired or
/// refreshed for someone else (docs/PROTOCOL.md 5.11). A client that knows it does not
/// reconnect with the same credentials.
pub(crate) const SESSION_ENDED: u16 = 4401;

/// The longest close reason a WebSocket close frame carries (125 bytes less the code's two).
pub(crate) const MAX_CLOSE_REASON: usize = 123;

/// `reason` cut to what a close frame carries, on a character boundary.
pub(crate) fn close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Milliseconds since the Unix epoch (0 for a time before it).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long from now until `ms` (zero when it passed).
pub(crate) fn until_ms(ms: u64) -> Duration {
    (UNIX_EPOCH + Duration::from_millis(ms))
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

#[derive(Debug, Default)]
pub(crate) struct Credentials {
    /// When the identity expires, in Unix milliseconds; 0: never.
    expires_ms: AtomicU64,
    renewal: Mutex<Option<Box<Renewal>>>,
}

#[derive(Debug)]
struct Renewal {
    /// The upgrade request, for the loader's runs on refreshed credentials.
    handshake: Handshake,
    /// The task that asks for a refresh, then ends the session at the expiry.
    timer: Option<AbortHandle>,
}

impl Credentials {
    /// When the identity expires (Unix ms), if it does.
    pub fn expires_ms(&self) -> Option<u64> {
        Some(self.expires_ms.load(Ordering::Acquire)).filter(|&ms| ms != 0)
    }

    /// Whether the identity has expired (a refresh did not come in time).
    #[inline]
    pub fn expired(&self) -> bool {
        let ms = self.expires_ms.load(Ordering::Acquire);
        ms != 0 && unix_ms(SystemTime::now()) >= ms
    }

    /// Sets the expiry, keeping `handshake` for the loader's next run and `timer` (replacing
    /// and stopping the previous one).
    pub fn renew(&self, expires_ms: u64, handshake: Handshake, timer: AbortHandle) {
        self.expires_ms.store(expires_ms.max(1), Ordering::Release);
        let old = lock(&self.renewal).replace(Box::new(Renewal {
            handshake,
            timer: Some(timer),
        }));
        if let Some(old) = old.and_then(|r| r.timer) {
            old.abort();
        }
    }

    /// The upgrade request the loader saw, for a refresh.
    pub fn handshake(&self) -> Option<Handshake> {
        lock(&self.renewal).as_ref().map(|r| r.handshake.clone())
    }

    /// The identity no longer expires (a refresh returned an identity without expiry).
    pub fn clear(&self) {
        self.expires_ms.store(0, Ordering::Release);
        self.stop();
    }

    /// Stops the timer (the connection ended, or the identity no longer expires).
    pub fn stop(&self) {
        if let Some(timer) = lock(&self.renewal).take().and_then(|r| r.timer) {
            timer.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(close_reason("revoked"), "revoked");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() >= MAX_CLOSE_REASON - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn an_identity_without_expiry_never_expires() {
        let c = Credentials::default();
        assert!(!c.expired());
        assert_eq!(c.expires_ms(), None);
        c.expires_ms.store(1, Ordering::Release);
        assert!(c.expired(), "1 ms after the epoch is long past");
    }
}
