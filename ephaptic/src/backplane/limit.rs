//! Rate limits shared by every server on one Redis: the same GCRA as the local limiter
//! (`runtime/ratelimit.rs`), its state one key per function and caller, updated by one atomic
//! script per check. The clock is Redis's own (`TIME`), so servers whose clocks disagree still
//! agree on every decision.

use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;

use super::Link;
use super::redis_driver;
use crate::handler::BoxFuture;
use crate::runtime::ratelimit::Remote;

/// `KEYS[1]`: the caller's key. `ARGV[1]`: the interval between calls (T / N) and `ARGV[2]` the
/// period T, both in microseconds. Returns 0 when the call is allowed, else the microseconds
/// to wait. (Microseconds since the epoch fit a Lua number exactly; `%.0f` keeps all their
/// digits, where Lua's default formatting would round to 14.)
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next = tat + tonumber(ARGV[1])
local wait = next - now - tonumber(ARGV[2])
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
return 0
";

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
    script: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(link: Arc<Link>) -> Self {
        Shared {
            link,
            script: Script::new(GCRA),
        }
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
        let script = self.script.clone();
        Box::pin(async move {
            if link.is_down() {
                // Known to be away: decide here at once instead of waiting for a timeout.
                return Err(());
            }
            let key = redis_key(function, &caller);
            let interval = (period / limit.max(1)).as_micros() as u64;
            let decided = script
                .key(key)
                .arg(interval)
                .arg(period.as_micros() as u64)
                .invoke_async::<u64>(&mut link.redis_manager())
                .await;
            match decided {
                Ok(0) => Ok(None),
                Ok(wait) => Ok(Some(Duration::from_micros(wait))),
                Err(e) => {
                    link.failed(&redis_driver::fault(&e));
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
