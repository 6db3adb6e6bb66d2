//! Rate limits shared by every server on one Redis: the same GCRA as the local limiter
//! (`runtime/ratelimit.rs`), its state one key per function and caller, updated by one atomic
//! script per check. The clock is Redis's own (`TIME`), so servers whose clocks disagree still
//! agree on every decision.

use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;

use super::Link;
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

/// Keys longer than this (a huge identity) are hashed, so that a client cannot make Redis
/// keep a key of its choosing's size.
const KEY_MAX: usize = 200;

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
        key: String,
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
            let key = if key.len() > KEY_MAX {
                // FNV-1a: the same digest from every server, whatever its build.
                let digest = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("ephaptic:rl:#{digest:016x}")
            } else {
                format!("ephaptic:rl:{key}")
            };
            let interval = (period / limit.max(1)).as_micros() as u64;
            let decided = script
                .key(key)
                .arg(interval)
                .arg(period.as_micros() as u64)
                .invoke_async::<u64>(&mut link.manager())
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
