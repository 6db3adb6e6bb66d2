//! Streams kept in Redis (docs/PROTOCOL.md 5.6 and 6), so a client resumes on any server.
//!
//! Each stream has a hash `ephaptic:{<stream>}:m` (`e`: its epoch, `s`: its top offset) and a
//! Redis stream `ephaptic:{<stream>}:s` whose entry ids are the offsets (`<offset>-1`), with the
//! frame (`d`), the time it was kept in milliseconds (`t`) and, for `recover = "latest"`
//! events, the event's name (`n`). One script numbers an event, keeps it and publishes it, so
//! what every server receives is exactly what a resume reads; servers deliver their own events
//! from what Redis publishes too, which gives every listener a stream's events in offset order.
//! The braces make both keys of a stream one Redis Cluster slot.

use super::driver::ReadReply;

use crate::identity::Identity;
use crate::runtime::history::{Kept, Read, Retention, Tenure, decide};
use crate::session::Asked;
use crate::session::Stream;

/// Numbers, keeps and publishes one event. KEYS: meta, stream. ARGV: a new epoch (used when
/// the stream has none), size, ttl (s), meta ttl (s), channel, message head, frame, `latest`
/// name or "", now (ms).
pub(crate) const APPEND: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch)
end
local top = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
if top == 1 then redis.call('DEL', KEYS[2]) end
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], top .. '-1', 'd', ARGV[7], 't', ARGV[9], 'n', ARGV[8])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. string.char(#epoch) .. epoch .. top .. ':' .. ARGV[7])
return top
";

/// Reads a stream for a resume. KEYS: meta, stream. ARGV: the first offset wanted, how many
/// at most (the most replayed, plus one), a new epoch (for a stream without one: it gets it now,
/// so the position the client is given holds), meta ttl (s), the epoch the client asked for
/// ("" for none), the reader's tenure field in the meta hash (`t:<identity key>` for a group
/// stream's identified reader, `-` for an anonymous one, "" for other streams), `1` when the
/// reader's tenure starts afresh whatever the hash says (a leave of it may not have reached
/// Redis yet), and the most tenures a stream keeps (past it a new reader gets none). Returns
/// `{epoch, top, entries, since}`: the entries only when they could be a recovery (same epoch,
/// not ahead of the stream, no more than the most replayed, within the reader's tenure), so a
/// client cannot make Redis read a long range for nothing; `since` is where the reader's tenure
/// began (-1: none, -2: not a group stream). A reader without a tenure starts one at `top`.
pub(crate) const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local top = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local from = tonumber(ARGV[1])
local since = -2
if ARGV[6] == '-' then
  since = -1
elseif ARGV[6] ~= '' then
  local t = redis.call('HGET', KEYS[1], ARGV[6])
  if t and ARGV[7] ~= '1' then
    since = tonumber(t)
  else
    since = -1
    if t or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[8]) + 2 then
      redis.call('HSET', KEYS[1], ARGV[6], top)
    end
  end
end
if ARGV[5] ~= epoch or from > top + 1 or top - from + 1 >= tonumber(ARGV[2]) then
  return {epoch, top, {}, since}
end
if since == -1 or since > from - 1 then
  return {epoch, top, {}, since}
end
local entries = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-1', '+', 'COUNT', ARGV[2])
return {epoch, top, entries, since}
";

/// The reader's field for [`READ`]'s last argument.
pub(crate) fn tenure_field(stream: &Stream<'_>, reader: Option<&Identity>) -> String {
    match (stream, reader) {
        (Stream::Group(_), Some(id)) => format!("t:{}", id.key()),
        (Stream::Group(_), None) => "-".to_owned(),
        _ => String::new(),
    }
}

/// The keys of a stream: its hash and its Redis stream.
pub(crate) fn keys(stream: &str) -> (String, String) {
    (
        format!("ephaptic:{{{stream}}}:m"),
        format!("ephaptic:{{{stream}}}:s"),
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Decides a resume from what a driver's read found.
pub(crate) fn decide_read(reply: &ReadReply, asked: Option<&Asked>, retention: &Retention) -> Read {
    let tenure = match reply.since {
        -2 => Tenure::Unscoped,
        since if since >= 0 => Tenure::Since(since as u64),
        _ => Tenure::None,
    };
    let now = now_ms();
    let after: Vec<Kept<'_>> = reply
        .entries
        .iter()
        .map(|e| Kept {
            seq: e.seq,
            age: std::time::Duration::from_millis(now.saturating_sub(e.at_ms)),
            frame: e.frame.clone(),
            latest: (!e.latest.is_empty()).then_some(e.latest.as_str()),
        })
        .collect();
    decide(asked, &reply.epoch, reply.top, tenure, &after, retention)
}

/// The epoch and top of what [`READ`] returned.
pub(crate) fn position_of(reply: &::redis::Value) -> Option<(String, u64)> {
    let ::redis::Value::Array(parts) = reply else {
        return None;
    };
    let epoch = text(parts.first()?)?;
    let top = text(parts.get(1)?)?.parse().ok()?;
    Some((epoch, top))
}

fn text(v: &::redis::Value) -> Option<String> {
    match v {
        ::redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        ::redis::Value::SimpleString(s) => Some(s.clone()),
        ::redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}
