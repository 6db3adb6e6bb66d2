//! Presence shared by every server on one Redis: the runtime's presence [`Store`] as three keys
//! per group, written only by the Lua scripts below (one atomic script per operation), so that
//! whether an entry is its member's first or last is decided once for all tabs and servers.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `ephaptic:pd:<group>` | hash | `<member>\n<connection>` -> the meta (MessagePack) |
//! | `ephaptic:pe:<group>` | sorted set | `<member>\n<connection>` scored by its expiry (ms, Redis's clock) |
//! | `ephaptic:pm:<group>` | hash | `<member>` -> its number of connections |
//!
//! Each server refreshes its own entries every third of the TTL (a heartbeat, which also
//! restores entries Redis lost); every script first removes the group's expired entries and
//! reports them, so the members of a server that crashed go at the latest one TTL after its
//! last heartbeat (at the first read or heartbeat of the group after that), and their leaves
//! are told by whichever server found them. The keys themselves expire two TTLs after the last
//! write, so a group nobody tracks any more leaves nothing behind. Connections are named
//! `<node>:<number>` and never contain a newline, so a field splits at its last one.
//! The scripts build no key names, and all of a group's keys are named in `KEYS`. On a Redis
//! Cluster the group's name is a hash tag (`ephaptic:pd:{<group>}`), so its three keys share a
//! slot and each script runs on the one shard that owns the group.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::{Script, Value};
use bytes::Bytes;

use super::connection::Connection;
use super::driver::{Fault, Reports};
use crate::handler::BoxFuture;
use crate::runtime::presence::{Changes, Entry, Joined, Left, Listing, Mine, Store};

/// What every script starts with: Redis's clock, the field's parts, the sweep, adding.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function member_of(f) return string.match(f, '^(.*)\n[^\n]*$') end
local function sweep(now, out)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
  for _, f in ipairs(dead) do
    redis.call('ZREM', KEYS[2], f)
    if redis.call('HDEL', KEYS[1], f) == 1 then
      local m = member_of(f)
      local last = 0
      if redis.call('HINCRBY', KEYS[3], m, -1) <= 0 then
        redis.call('HDEL', KEYS[3], m)
        last = 1
      end
      out[#out + 1] = f
      out[#out + 1] = last
    end
  end
end
local function add(now, ttl, member, conn, meta)
  local f = member .. '\n' .. conn
  local new = redis.call('HSET', KEYS[1], f, meta)
  redis.call('ZADD', KEYS[2], now + ttl, f)
  if new == 1 and redis.call('HINCRBY', KEYS[3], member, 1) == 1 then
    return 1
  end
  return 0
end
local function keep(ms)
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ms) end
end
";

/// `ARGV`: ttl (ms), key expiry (ms), member, connection, meta. Returns `{first, expired}`.
const TRACK: &str = r"
local now = now_ms()
local out = {}
sweep(now, out)
local first = add(now, tonumber(ARGV[1]), ARGV[3], ARGV[4], ARGV[5])
keep(tonumber(ARGV[2]))
return {first, out}
";

/// `ARGV`: member, connection. Returns `{last (-1: was not tracked), expired}`.
const UNTRACK: &str = r"
local out = {}
sweep(now_ms(), out)
local f = ARGV[1] .. '\n' .. ARGV[2]
redis.call('ZREM', KEYS[2], f)
local last = -1
if redis.call('HDEL', KEYS[1], f) == 1 then
  last = 0
  if redis.call('HINCRBY', KEYS[3], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[3], ARGV[1])
    last = 1
  end
end
return {last, out}
";

/// `ARGV`: the most members to list (0: counts only). Returns `{users, connections,
/// truncated, [field, meta, ...], expired}`. A cut list holds the members a scan meets first
/// (sorted by the server afterwards).
const LIST: &str = r"
local out = {}
sweep(now_ms(), out)
local users = redis.call('HLEN', KEYS[3])
local conns = redis.call('HLEN', KEYS[1])
local cap = tonumber(ARGV[1])
local entries = {}
local truncated = 0
if cap > 0 and users > 0 then
  if users <= cap then
    entries = redis.call('HGETALL', KEYS[1])
  else
    truncated = 1
    local seen, n, cursor = {}, 0, '0'
    repeat
      local r = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 512)
      cursor = r[1]
      local kv = r[2]
      for i = 1, #kv, 2 do
        local m = member_of(kv[i])
        if not seen[m] then
          if n >= cap then
            cursor = '0'
            break
          end
          seen[m] = true
          n = n + 1
        end
        entries[#entries + 1] = kv[i]
        entries[#entries + 1] = kv[i + 1]
      end
    until cursor == '0'
  end
end
return {users, conns, truncated, entries, out}
";

/// `ARGV`: ttl (ms), key expiry (ms), then member, connection, meta for each of this server's
/// entries. Refreshes them (restoring any that are gone), then sweeps. Returns `{[field, first,
/// ...] restored, expired}`.
const HEARTBEAT: &str = r"
local now = now_ms()
local ttl = tonumber(ARGV[1])
local restored = {}
for i = 3, #ARGV, 3 do
  local f = ARGV[i] .. '\n' .. ARGV[i + 1]
  if redis.call('HEXISTS', KEYS[1], f) == 1 then
    redis.call('ZADD', KEYS[2], now + ttl, f)
  else
    restored[#restored + 1] = f
    restored[#restored + 1] = add(now, ttl, ARGV[i], ARGV[i + 1], ARGV[i + 2])
  end
end
local out = {}
sweep(now, out)
keep(tonumber(ARGV[2]))
return {restored, out}
";

/// This server's entries refreshed by one heartbeat script at most.
const BEAT_CHUNK: usize = 1000;

/// A group's three keys (on a cluster, `tagged`: one slot for all three).
fn keys(group: &str, tagged: bool) -> [String; 3] {
    if tagged {
        [
            format!("ephaptic:pd:{{{group}}}"),
            format!("ephaptic:pe:{{{group}}}"),
            format!("ephaptic:pm:{{{group}}}"),
        ]
    } else {
        [
            format!("ephaptic:pd:{group}"),
            format!("ephaptic:pe:{group}"),
            format!("ephaptic:pm:{group}"),
        ]
    }
}

/// `<member>\n<connection>`, split at the last newline.
fn split(field: &[u8]) -> Option<(String, String)> {
    let at = field.iter().rposition(|b| *b == b'\n')?;
    let member = std::str::from_utf8(&field[..at]).ok()?;
    let conn = std::str::from_utf8(&field[at + 1..]).ok()?;
    Some((member.to_owned(), conn.to_owned()))
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        _ => 0,
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        _ => &[],
    }
}

fn bytes(v: &Value) -> &[u8] {
    match v {
        Value::BulkString(b) => b,
        _ => &[],
    }
}

/// `[field, flag, ...]` pairs of a script's answer.
fn pairs(v: &Value) -> impl Iterator<Item = (&[u8], &Value)> {
    array(v).chunks_exact(2).map(|p| (bytes(&p[0]), &p[1]))
}

/// The leaves of a script's `expired` list.
fn expired(v: &Value) -> Vec<Left> {
    pairs(v)
        .filter_map(|(field, last)| {
            let (member, conn) = split(field)?;
            Some(Left {
                member,
                conn,
                last: int(last) == 1,
            })
        })
        .collect()
}

/// The Redis store of one server.
pub(super) struct Shared {
    engine: Arc<Engine>,
    ttl: Duration,
    track: Script,
    untrack: Script,
    list: Script,
    heartbeat: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The connection the store runs its scripts on (the Redis driver's; gone with it), whether
/// its keys are tagged for a cluster, and where it reports the engine's health.
pub(super) struct Engine {
    connection: Weak<Connection>,
    tagged: bool,
    reports: Weak<dyn Reports>,
}

impl Engine {
    fn is_down(&self) -> bool {
        self.reports.upgrade().is_some_and(|r| r.is_down())
    }
}

impl Shared {
    pub fn new(
        connection: Weak<Connection>,
        tagged: bool,
        reports: Weak<dyn Reports>,
        ttl: Duration,
    ) -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Shared {
            engine: Arc::new(Engine {
                connection,
                tagged,
                reports,
            }),
            ttl,
            track: script(TRACK),
            untrack: script(UNTRACK),
            list: script(LIST),
            heartbeat: script(HEARTBEAT),
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    fn keep_ms(&self) -> u64 {
        2 * self.ttl_ms()
    }

    /// Runs `script` on `group`'s keys.
    async fn run(
        engine: &Engine,
        script: &Script,
        group: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Value, String> {
        let mut invocation = script.prepare_invoke();
        for key in keys(group, engine.tagged) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let Some(connection) = engine.connection.upgrade() else {
            return Err("the server is gone".to_owned());
        };
        // On a cluster, a failure is the group's shard's, not the whole engine's.
        let part = |mut fault: Fault| {
            if engine.tagged {
                fault.sent = Some(Vec::new());
            }
            fault
        };
        let connection = match connection.get().await {
            Ok(connection) => connection,
            Err(fault) => {
                if let Some(reports) = engine.reports.upgrade() {
                    reports.failed(&fault);
                }
                return Err(format!("Redis: {fault}"));
            }
        };
        match invocation
            .invoke_async::<Value>(&mut connection.clone())
            .await
        {
            Ok(v) => {
                if let Some(reports) = engine.reports.upgrade() {
                    reports.up();
                }
                Ok(v)
            }
            Err(e) => {
                if let Some(reports) = engine.reports.upgrade() {
                    reports.failed(&part(Fault::from(&e)));
                }
                Err(format!("Redis: {e}"))
            }
        }
    }
}

fn num(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

impl Store for Shared {
    fn track(&self, group: &str, entry: Entry) -> BoxFuture<Result<Changes, String>> {
        let engine = self.engine.clone();
        let script = self.track.clone();
        let group = group.to_owned();
        let args = vec![
            num(self.ttl_ms()),
            num(self.keep_ms()),
            entry.member.clone().into_bytes(),
            entry.conn.clone().into_bytes(),
            entry.meta.to_vec(),
        ];
        Box::pin(async move {
            let v = Self::run(&engine, &script, &group, args).await?;
            let parts = array(&v);
            let first = parts.first().map(int) == Some(1);
            Ok(Changes {
                left: parts.get(1).map(expired).unwrap_or_default(),
                joined: vec![Joined {
                    member: entry.member,
                    conn: entry.conn,
                    meta: entry.meta,
                    first,
                }],
            })
        })
    }

    fn untrack(&self, group: &str, member: &str, conn: &str) -> BoxFuture<Result<Changes, String>> {
        let engine = self.engine.clone();
        let script = self.untrack.clone();
        let group = group.to_owned();
        let (member, conn) = (member.to_owned(), conn.to_owned());
        let args = vec![member.clone().into_bytes(), conn.clone().into_bytes()];
        Box::pin(async move {
            let v = Self::run(&engine, &script, &group, args).await?;
            let parts = array(&v);
            let mut left = parts.get(1).map(expired).unwrap_or_default();
            let last = parts.first().map(int).unwrap_or(-1);
            if last >= 0 {
                left.push(Left {
                    member,
                    conn,
                    last: last == 1,
                });
            }
            Ok(Changes {
                joined: Vec::new(),
                left,
            })
        })
    }

    fn list(&self, group: &str, cap: usize) -> BoxFuture<Result<Listing, String>> {
        let engine = self.engine.clone();
        let script = self.list.clone();
        let group = group.to_owned();
        let args = vec![num(cap as u64)];
        Box::pin(async move {
            let v = Self::run(&engine, &script, &group, args).await?;
            let parts = array(&v);
            let at = |i: usize| parts.get(i).map(int).unwrap_or(0);
            let mut entries: Vec<Entry> = parts
                .get(3)
                .map(|v| {
                    array(v)
                        .chunks_exact(2)
                        .filter_map(|p| {
                            let (member, conn) = split(bytes(&p[0]))?;
                            Some(Entry {
                                member,
                                conn,
                                meta: Bytes::copy_from_slice(bytes(&p[1])),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            entries.sort_by(|a, b| (&a.member, &a.conn).cmp(&(&b.member, &b.conn)));
            Ok(Listing {
                entries,
                users: at(0).max(0) as u64,
                connections: at(1).max(0) as u64,
                truncated: at(2) == 1,
                expired: Changes {
                    joined: Vec::new(),
                    left: parts.get(4).map(expired).unwrap_or_default(),
                },
            })
        })
    }

    fn heartbeat_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }

    fn heartbeat(&self, mine: Vec<Mine>, sweep: Vec<String>) -> BoxFuture<Vec<(String, Changes)>> {
        let engine = self.engine.clone();
        let script = self.heartbeat.clone();
        let (ttl, keep) = (self.ttl_ms(), self.keep_ms());
        Box::pin(async move {
            if engine.is_down() {
                // Nothing can be refreshed; the next beat after Redis is back restores.
                return Vec::new();
            }
            let mut work: Vec<(String, Vec<Entry>)> =
                mine.into_iter().map(|m| (m.group, m.entries)).collect();
            work.extend(sweep.into_iter().map(|g| (g, Vec::new())));
            let mut out = Vec::new();
            for (group, entries) in work {
                let mut changes = Changes::default();
                let chunks: Vec<&[Entry]> = if entries.is_empty() {
                    vec![&[]]
                } else {
                    entries.chunks(BEAT_CHUNK).collect()
                };
                for chunk in chunks {
                    let mut args = vec![num(ttl), num(keep)];
                    for e in chunk {
                        args.push(e.member.clone().into_bytes());
                        args.push(e.conn.clone().into_bytes());
                        args.push(e.meta.to_vec());
                    }
                    let Ok(v) = Self::run(&engine, &script, &group, args).await else {
                        return out;
                    };
                    let parts = array(&v);
                    if let Some(restored) = parts.first() {
                        for (field, first) in pairs(restored) {
                            let Some((member, conn)) = split(field) else {
                                continue;
                            };
                            let meta = chunk
                                .iter()
                                .find(|e| e.member == member && e.conn == conn)
                                .map(|e| e.meta.clone())
                                .unwrap_or_default();
                            changes.joined.push(Joined {
                                member,
                                conn,
                                meta,
                                first: int(first) == 1,
                            });
                        }
                    }
                    changes
                        .left
                        .extend(parts.get(1).map(expired).unwrap_or_default());
                }
                if !changes.is_empty() {
                    out.push((group, changes));
                }
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_at_their_last_newline() {
        assert_eq!(
            split(b"s:a\nb\nrs-1:7"),
            Some(("s:a\nb".into(), "rs-1:7".into()))
        );
        assert_eq!(split(b"no newline"), None);
        assert_eq!(
            keys("room:1", false),
            [
                "ephaptic:pd:room:1",
                "ephaptic:pe:room:1",
                "ephaptic:pm:room:1"
            ]
        );
    }
}
