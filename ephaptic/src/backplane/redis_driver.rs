//! The backplane's [`Driver`] on Redis (or Valkey), through redis-rs's `ConnectionManager`:
//! one multiplexed RESP3 connection per server carrying commands and pub/sub pushes, that
//! reconnects and re-subscribes by itself. Streams are kept by the Lua scripts of
//! `history.rs`. The shared rate limiter (`limit.rs`) and presence store (`presence.rs`) use
//! the same connection ([`RedisDriver::manager`]).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, PushInfo, PushKind, Value};
use bytes::Bytes;

use super::driver::{
    AppendContext, Done, Driver, Fault, FaultKind, Inbox, Job, KeptEntry, ReadReply, ReadRequest,
    Reports,
};
use super::history;
use super::presence;

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

/// `KEYS[1]`: an idempotent call's answer slot; `ARGV[1]`: its time to live in ms. Returns
/// what the slot holds, or nil when it was free (it holds `R`, running, now).
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], 'R', 'PX', ARGV[1])
return false
";

pub(crate) struct RedisDriver {
    /// Itself, weakly: for the presence store, which reaches the connection through it.
    me: Weak<RedisDriver>,
    client: Client,
    /// The connection in use; replaced when the liveness probe finds it deaf.
    manager: Mutex<Option<ConnectionManager>>,
    inbox: OnceLock<Weak<dyn Inbox>>,
    append: ::redis::Script,
    read: ::redis::Script,
    gcra: ::redis::Script,
    claim: ::redis::Script,
    /// The append script is loaded (a Redis that restarts forgets it).
    loaded: AtomicBool,
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a Redis error means for the backplane.
pub(crate) fn fault(e: &::redis::RedisError) -> Fault {
    Fault::from(e)
}

impl RedisDriver {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new_cyclic(|me| RedisDriver {
            me: me.clone(),
            client,
            manager: Mutex::new(None),
            inbox: OnceLock::new(),
            append: ::redis::Script::new(history::APPEND),
            read: ::redis::Script::new(history::READ),
            gcra: ::redis::Script::new(GCRA),
            claim: ::redis::Script::new(CLAIM),
            loaded: AtomicBool::new(false),
        })
    }

    /// The connection in use (made, lazily, when there is none).
    pub fn manager(&self) -> ConnectionManager {
        let mut current = lock(&self.manager);
        if let Some(manager) = &*current {
            return manager.clone();
        }
        let manager = self.connect();
        *current = Some(manager.clone());
        manager
    }

    /// A new connection: lazy (an unreachable Redis is not an error here), RESP3, re-subscribing
    /// by itself after a reconnect. Published messages go to the inbox (which bounds what waits),
    /// and a lost connection is reported there; subscription confirmations are command replies.
    fn connect(&self) -> ConnectionManager {
        let inbox = self.inbox.get().cloned();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |info: PushInfo| {
                let Some(inbox) = inbox.as_ref().and_then(Weak::upgrade) else {
                    return Ok::<(), ()>(());
                };
                match info.kind {
                    PushKind::Message => {
                        if let [Value::BulkString(channel), Value::BulkString(body)] =
                            &info.data[..]
                        {
                            inbox.message(channel, body);
                        }
                    }
                    // The connection manager reconnects and re-subscribes by itself; until it
                    // has, this server hears nothing from the others.
                    PushKind::Disconnection => inbox.disconnected(),
                    _ => {}
                }
                Ok(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .expect("a RESP3 client with a push sender")
    }

    /// One round trip for a batch of jobs.
    fn pipeline(&self, batch: &[Job], ctx: &AppendContext) -> ::redis::Pipeline {
        let mut pipe = ::redis::pipe();
        for job in batch {
            match job {
                Job::Publish(channel, body) => {
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(body.as_slice())
                        .ignore();
                }
                Job::Append {
                    keys,
                    channel,
                    frame,
                    latest,
                    retention,
                } => {
                    pipe.cmd("EVALSHA")
                        .arg(self.append.get_hash())
                        .arg(2)
                        .arg(&keys.0)
                        .arg(&keys.1)
                        // Each stream that starts an epoch gets one of its own.
                        .arg(crate::runtime::history::new_epoch())
                        .arg(retention.size)
                        .arg(retention.ttl.as_secs().max(1))
                        // A stream's position (and its members' tenures) lives on the same
                        // clock as in memory: `meta_ttl` after its last event.
                        .arg(ctx.meta_ttl_secs)
                        .arg(channel)
                        .arg(ctx.head.as_slice())
                        .arg(&frame[..])
                        .arg(*latest)
                        .arg(ctx.now_ms)
                        .ignore();
                }
            }
        }
        pipe
    }
}

impl Driver for RedisDriver {
    fn attach(&self, inbox: Weak<dyn Inbox>) {
        let _ = self.inbox.set(inbox);
    }

    fn send<'a>(&'a self, batch: &'a [Job], ctx: &'a AppendContext) -> Done<'a, ()> {
        Box::pin(async move {
            let appends = batch.iter().any(|j| matches!(j, Job::Append { .. }));
            if appends && !self.loaded.load(Relaxed) {
                let loaded = self.append.load_async(&mut self.manager()).await.is_ok();
                self.loaded.store(loaded, Relaxed);
            }
            let sent = self
                .pipeline(batch, ctx)
                .query_async::<()>(&mut self.manager())
                .await;
            match sent {
                Err(e)
                    if e.kind()
                        == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
                {
                    // A Redis that restarted (or was flushed) forgot the script: load it and
                    // send the appends again (they did not run; the plain publishes went out).
                    let loaded = self.append.load_async(&mut self.manager()).await.is_ok();
                    self.loaded.store(loaded, Relaxed);
                    let again: Vec<Job> = batch
                        .iter()
                        .filter(|j| matches!(j, Job::Append { .. }))
                        .cloned()
                        .collect();
                    self.pipeline(&again, ctx)
                        .query_async::<()>(&mut self.manager())
                        .await
                        .map_err(|e| fault(&e))
                }
                other => other.map_err(|e| fault(&e)),
            }
        })
    }

    fn subscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.manager()
                .subscribe(channels)
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.manager()
                .unsubscribe(channels)
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn read<'a>(&'a self, r: ReadRequest<'a>) -> Done<'a, ReadReply> {
        Box::pin(async move {
            let reply = self
                .read
                .key(r.meta)
                .key(r.stream)
                .arg(r.from)
                .arg(r.count)
                .arg(&r.new_epoch)
                .arg(r.meta_ttl_secs.max(1))
                .arg(r.asked_epoch)
                .arg(r.tenure_field)
                .arg(if r.fresh { "1" } else { "" })
                .arg(r.max_tenures)
                .invoke_async::<Value>(&mut self.manager())
                .await
                .map_err(|e| fault(&e))?;
            read_reply(&reply).ok_or_else(|| {
                Fault::new(FaultKind::Refused, "an unreadable reply to the read script")
            })
        })
    }

    fn rate<'a>(&'a self, key: &'a str, interval_us: u64, period_us: u64) -> Done<'a, u64> {
        Box::pin(async move {
            self.gcra
                .key(key)
                .arg(interval_us)
                .arg(period_us)
                .invoke_async::<u64>(&mut self.manager())
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn claim<'a>(&'a self, key: &'a str, ttl_ms: u64) -> Done<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.claim
                .key(key)
                .arg(ttl_ms.max(1))
                .invoke_async::<Option<Vec<u8>>>(&mut self.manager())
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn keep<'a>(&'a self, key: &'a str, value: &'a [u8], ttl_ms: u64) -> Done<'a, ()> {
        Box::pin(async move {
            let mut cmd = if value.is_empty() {
                ::redis::cmd("DEL")
            } else {
                ::redis::cmd("SET")
            };
            cmd.arg(key);
            if !value.is_empty() {
                cmd.arg(value).arg("PX").arg(ttl_ms.max(1));
            }
            cmd.query_async::<()>(&mut self.manager())
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn presence_store(
        &self,
        ttl: Duration,
        reports: Weak<dyn Reports>,
    ) -> Arc<dyn crate::runtime::presence::Store> {
        let me = self.me.clone();
        let connection = move || me.upgrade().map(|driver| driver.manager());
        Arc::new(presence::Shared::new(Box::new(connection), reports, ttl))
    }

    fn forget<'a>(&'a self, tenures: &'a [(String, String)]) -> Done<'a, ()> {
        Box::pin(async move {
            let mut pipe = ::redis::pipe();
            for (meta, field) in tenures {
                pipe.cmd("HDEL").arg(meta).arg(field).ignore();
            }
            pipe.query_async::<()>(&mut self.manager())
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn seed<'a>(&'a self, meta: &'a str, fields: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            let mut pipe = ::redis::pipe();
            for field in fields {
                pipe.cmd("HSETNX").arg(meta).arg(field).arg(0).ignore();
            }
            pipe.query_async::<()>(&mut self.manager())
                .await
                .map_err(|e| fault(&e))
        })
    }

    fn reconnect(&self, channels: Vec<String>) {
        let old = lock(&self.manager).replace(self.connect());
        // The old one leaves everything first (in the background, best effort), so that a
        // connection that was not deaf after all does not deliver twice.
        if let Some(mut old) = old {
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), old.unsubscribe(&channels)).await;
            });
        }
    }

    fn close(&self) {
        lock(&self.manager).take();
    }
}

/// Reads what [`history::READ`] returned.
fn read_reply(reply: &Value) -> Option<ReadReply> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let (epoch, top) = history::position_of(reply)?;
    let Some(Value::Array(entries)) = parts.get(2) else {
        return None;
    };
    let since = match parts.get(3) {
        Some(Value::Int(since)) => *since,
        _ => -1,
    };
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(e) = entry else { return None };
        let [id, Value::Array(fields)] = &e[..] else {
            return None;
        };
        let seq: u64 = text(id)?.split('-').next()?.parse().ok()?;
        let (mut frame, mut at_ms, mut latest) = (None, 0u64, String::new());
        for pair in fields.chunks(2) {
            if let [k, v] = pair {
                match text(k)?.as_str() {
                    "d" => frame = Some(bytes(v)?),
                    "t" => at_ms = text(v)?.parse().unwrap_or(0),
                    "n" => latest = text(v)?,
                    _ => {}
                }
            }
        }
        kept.push(KeptEntry {
            seq,
            at_ms,
            frame: frame?,
            latest,
        });
    }
    Some(ReadReply {
        epoch,
        top,
        entries: kept,
        since,
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bytes(v: &Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        _ => None,
    }
}
