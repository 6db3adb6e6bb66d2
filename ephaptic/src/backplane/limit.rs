//! Rate limits shared by every server on one engine: the same GCRA as the local limiter
//! (`runtime/ratelimit.rs`), its state one key per function and caller, decided by the engine
//! in one step per check ([`Driver::rate`](super::driver::Driver::rate): on Redis one atomic
//! script whose clock is Redis's own, so servers whose clocks disagree still agree).

use std::sync::Arc;
use std::time::Duration;

use super::Link;
use crate::handler::BoxFuture;
use crate::runtime::ratelimit::Remote;

/// A caller part longer than this (with the function name and its colon) is replaced by its
/// digest, so that no client chooses the size of a key Redis keeps.
const KEY_MAX: usize = 200;

/// The Redis key of `caller`'s state for `function`: `ephaptic:rl:<function>:<caller>`, as
/// written when short (readable in `redis-cli`, and what earlier versions wrote), else
/// `ephaptic:rl:<function>:#<SHA-1 of caller, 40 hex digits>` (the function stays readable;
/// a caller part never starts with `#`, so the two forms cannot meet).
///
/// Every server must compute the same key without sharing a secret, so the digest cannot be
/// keyed as the local limiter's is; it must instead be one nobody can aim: a client who could
/// find an identity with the digest of someone else's would spend that caller's limit. (The
/// FNV-1a that used to be here can be aimed; SHA-1 second preimages are out of reach.)
fn redis_key(function: &str, caller: &str) -> String {
    if function.len() + 1 + caller.len() > KEY_MAX {
        let digest = sha1_smol::Sha1::from(caller).digest();
        format!("ephaptic:rl:{function}:#{digest}")
    } else {
        format!("ephaptic:rl:{function}:{caller}")
    }
}

pub(super) struct Shared {
    link: Arc<Link>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(link: Arc<Link>) -> Self {
        Shared { link }
    }
}

impl Remote for Shared {
    fn check(
        &self,
        function: &'static str,
        caller: String,
        limit: u32,
        period: Duration,
    ) -> BoxFuture<Result<Option<Duration>, ()>> {
        let link = self.link.clone();
        Box::pin(async move {
            if link.is_down() {
                // Known to be away: decide here at once instead of waiting for a timeout.
                return Err(());
            }
            let key = redis_key(function, &caller);
            let interval = (period / limit.max(1)).as_micros() as u64;
            let decided = link
                .driver
                .rate(&key, interval, period.as_micros() as u64)
                .await;
            match decided {
                Ok(0) => Ok(None),
                Ok(wait) => Ok(Some(Duration::from_micros(wait))),
                Err(e) => {
                    link.failed(&e);
                    Err(())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_readable_and_long_ones_bounded() {
        assert_eq!(
            redis_key("limited", "u:s:alice"),
            "ephaptic:rl:limited:u:s:alice"
        );
        assert_eq!(redis_key("f", "ip:127.0.0.1"), "ephaptic:rl:f:ip:127.0.0.1");
        let long = format!("u:s:{}", "x".repeat(1024));
        let key = redis_key("limited", &long);
        assert_eq!(key.len(), "ephaptic:rl:limited:#".len() + 40, "{key}");
        assert!(key.starts_with("ephaptic:rl:limited:#"), "{key}");
        assert_ne!(key, redis_key("limited", &format!("{long}y")));
        assert_eq!(key, redis_key("limited", &long), "the same on every server");
        // The boundary: 200 bytes with the function kept, one more hashed.
        let at = "c".repeat(200 - "limited:".len());
        assert!(!redis_key("limited", &at).contains('#'));
        assert!(redis_key("limited", &format!("{at}c")).contains('#'));
    }
}
