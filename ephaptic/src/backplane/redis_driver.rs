//! The backplane's [`Driver`] on Redis (or Valkey): one server, the master Redis Sentinel names,
//! or a Redis Cluster, through the connection of `connection.rs` (one multiplexed RESP3
//! connection per server, or per cluster node, carrying commands and pub/sub pushes, that
//! reconnects and re-subscribes by itself). Streams are kept by the Lua scripts of
//! `history.rs`. The shared rate limiter (`limit.rs`) and idempotent answers use the driver;
//! the presence store (`presence.rs`) the same connection.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::Value;
use bytes::Bytes;

use super::channel;
use super::connection::{Conn, Connection};
use super::driver::{
    AppendContext, Done, Driver, Fault, FaultKind, Inbox, Job, KeptEntry, ReadReply, ReadRequest,
    Reports,
};
use super::history;
use super::presence;
use super::target::Target;

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
    /// The connection in use (one server, Sentinel's master, or a cluster).
    connection: Arc<Connection>,
    append: ::redis::Script,
    /// The append script with `SPUBLISH` (a cluster's shard channels) for `PUBLISH`.
    append_sharded: ::redis::Script,
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

/// What a Redis error means for the backplane.
pub(crate) fn fault(e: &::redis::RedisError) -> Fault {
    Fault::from(e)
}

impl RedisDriver {
    pub fn new(target: Target) -> Result<Arc<Self>, String> {
        let sharded = history::APPEND.replace("'PUBLISH'", "'SPUBLISH'");
        Ok(Arc::new(RedisDriver {
            connection: Arc::new(Connection::new(target)?),
            append: ::redis::Script::new(history::APPEND),
            append_sharded: ::redis::Script::new(&sharded),
            read: ::redis::Script::new(history::READ),
            gcra: ::redis::Script::new(GCRA),
            claim: ::redis::Script::new(CLAIM),
            loaded: AtomicBool::new(false),
        }))
    }

    async fn conn(&self) -> Result<Conn, Fault> {
        self.connection.get().await
    }

    /// What an error of one operation means. On a cluster it is one shard's (the others may
    /// work): the fault says so (`sent`, empty: nothing of it was done), and the backplane
    /// does not take it for an outage of the whole engine.
    fn fault(&self, e: &::redis::RedisError) -> Fault {
        let mut fault = fault(e);
        if self.connection.is_cluster() {
            fault.sent = Some(Vec::new());
        }
        fault
    }

    /// A subscription's error: on a cluster, with which channels it worked for.
    fn subscription_fault(&self, (e, worked): (::redis::RedisError, Vec<bool>)) -> Fault {
        let mut fault = fault(&e);
        if self.connection.is_cluster() {
            fault.sent = Some(worked);
        }
        fault
    }

    fn append_script(&self, conn: &Conn) -> &::redis::Script {
        if conn.is_cluster() {
            &self.append_sharded
        } else {
            &self.append
        }
    }

    /// One round trip for a batch of jobs (on a cluster, jobs of one stream).
    fn pipeline<'j>(
        &self,
        cluster: bool,
        batch: impl IntoIterator<Item = &'j Job>,
        ctx: &AppendContext,
    ) -> ::redis::Pipeline {
        let mut pipe = ::redis::pipe();
        let name = |channel: &str| {
            if cluster {
                channel::sharded(channel)
            } else {
                channel.to_owned()
            }
        };
        let append = if cluster {
            &self.append_sharded
        } else {
            &self.append
        };
        for job in batch {
            match job {
                Job::Publish(channel, body) => {
                    pipe.cmd(if cluster { "SPUBLISH" } else { "PUBLISH" })
                        .arg(name(channel))
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
                        .arg(append.get_hash())
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
                        .arg(name(channel))
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

    /// Sends `jobs` in one round trip; when Redis forgot the append script (it restarted, was
    /// flushed, or a replica took over), loads it and sends the appends again (they did not
    /// run; the plain publishes went out).
    async fn send_one(
        &self,
        conn: &Conn,
        jobs: &[&Job],
        ctx: &AppendContext,
    ) -> Result<(), ::redis::RedisError> {
        let cluster = conn.is_cluster();
        let sent = self
            .pipeline(cluster, jobs.iter().copied(), ctx)
            .query_async::<()>(&mut conn.clone())
            .await;
        match sent {
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                let loaded = self
                    .append_script(conn)
                    .load_async(&mut conn.clone())
                    .await
                    .is_ok();
                self.loaded.store(loaded, Relaxed);
                let again = jobs
                    .iter()
                    .copied()
                    .filter(|j| matches!(j, Job::Append { .. }));
                self.pipeline(cluster, again, ctx)
                    .query_async::<()>(&mut conn.clone())
                    .await
            }
            other => other,
        }
    }

    /// A cluster's batch: one pipeline per stream (a pipeline stays in one slot), in order
    /// within each and at once across them. When some fail, the fault says which jobs were sent.
    async fn send_sharded(
        &self,
        conn: &Conn,
        batch: &[Job],
        ctx: &AppendContext,
    ) -> Result<(), Fault> {
        let groups = together(batch, |job| match job {
            Job::Publish(channel, _) | Job::Append { channel, .. } => channel,
        });
        let results = futures_util::future::join_all(groups.iter().map(|members| {
            let jobs: Vec<&Job> = members.iter().map(|&i| &batch[i]).collect();
            async move { self.send_one(conn, &jobs, ctx).await }
        }))
        .await;
        let mut sent = vec![false; batch.len()];
        let mut first = None;
        for (members, result) in groups.iter().zip(results) {
            match result {
                Ok(()) => members.iter().for_each(|&i| sent[i] = true),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => {
                let mut fault = fault(&e);
                fault.sent = Some(sent);
                Err(fault)
            }
        }
    }
}

impl Driver for RedisDriver {
    fn attach(&self, inbox: Weak<dyn Inbox>) {
        self.connection.attach(inbox);
    }

    fn send<'a>(&'a self, batch: &'a [Job], ctx: &'a AppendContext) -> Done<'a, ()> {
        Box::pin(async move {
            let conn = self.conn().await?;
            let appends = batch.iter().any(|j| matches!(j, Job::Append { .. }));
            if appends && !self.loaded.load(Relaxed) {
                let loaded = self
                    .append_script(&conn)
                    .load_async(&mut conn.clone())
                    .await
                    .is_ok();
                self.loaded.store(loaded, Relaxed);
            }
            if conn.is_cluster() {
                return self.send_sharded(&conn, batch, ctx).await;
            }
            let jobs: Vec<&Job> = batch.iter().collect();
            self.send_one(&conn, &jobs, ctx)
                .await
                .map_err(|e| self.fault(&e))
        })
    }

    fn subscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.conn()
                .await?
                .subscribe(channels)
                .await
                .map_err(|e| self.subscription_fault(e))
        })
    }

    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.conn()
                .await?
                .unsubscribe(channels)
                .await
                .map_err(|e| self.subscription_fault(e))
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
                .invoke_async::<Value>(&mut self.conn().await?)
                .await
                .map_err(|e| self.fault(&e))?;
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
                .invoke_async::<u64>(&mut self.conn().await?)
                .await
                .map_err(|e| self.fault(&e))
        })
    }

    fn claim<'a>(&'a self, key: &'a str, ttl_ms: u64) -> Done<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.claim
                .key(key)
                .arg(ttl_ms.max(1))
                .invoke_async::<Option<Vec<u8>>>(&mut self.conn().await?)
                .await
                .map_err(|e| self.fault(&e))
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
            cmd.query_async::<()>(&mut self.conn().await?)
                .await
                .map_err(|e| self.fault(&e))
        })
    }

    fn presence_store(
        &self,
        ttl: Duration,
        reports: Weak<dyn Reports>,
    ) -> Arc<dyn crate::runtime::presence::Store> {
        Arc::new(presence::Shared::new(
            Arc::downgrade(&self.connection),
            self.connection.is_cluster(),
            reports,
            ttl,
        ))
    }

    fn forget<'a>(&'a self, tenures: &'a [(String, String)]) -> Done<'a, ()> {
        Box::pin(async move {
            let conn = self.conn().await?;
            // On a cluster, one pipeline per stream hash (a pipeline stays in one slot).
            let cluster = conn.is_cluster();
            let groups = together(tenures, |(meta, _)| if cluster { meta } else { "" });
            for group in groups {
                let mut pipe = ::redis::pipe();
                for (meta, field) in group.iter().map(|&i| &tenures[i]) {
                    pipe.cmd("HDEL").arg(meta).arg(field).ignore();
                }
                pipe.query_async::<()>(&mut conn.clone())
                    .await
                    .map_err(|e| self.fault(&e))?;
            }
            Ok(())
        })
    }

    fn seed<'a>(&'a self, meta: &'a str, fields: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            let mut pipe = ::redis::pipe();
            for field in fields {
                pipe.cmd("HSETNX").arg(meta).arg(field).arg(0).ignore();
            }
            pipe.query_async::<()>(&mut self.conn().await?)
                .await
                .map_err(|e| self.fault(&e))
        })
    }

    fn reconnect(&self, channels: Vec<String>) {
        // The old one leaves everything first (in the background, best effort), so that a
        // connection that was not deaf after all does not deliver twice.
        if let Some(mut old) = self.connection.replace() {
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), old.unsubscribe(&channels)).await;
            });
        }
    }

    fn renew<'a>(&'a self, channels: &'a [String]) -> Done<'a, bool> {
        Box::pin(self.connection.renew(channels))
    }

    fn follow(&self) -> Done<'_, Option<String>> {
        Box::pin(self.connection.follow())
    }

    fn close(&self) {
        self.connection.replace();
    }
}

/// The indices of `items` grouped by `key`, groups in the order their first item comes and
/// items in their order: on a cluster, a pipeline per stream (`key`: its channel or hash, each
/// with the stream's hash tag), which keeps it in one slot.
fn together<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = *index.entry(key(item)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(i);
    }
    groups
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

#[cfg(test)]
mod tests {
    #[test]
    fn jobs_are_grouped_by_stream_in_order() {
        let keys = ["a", "b", "a", "c", "b", "a"];
        assert_eq!(
            super::together(&keys, |k| k),
            [vec![0, 2, 5], vec![1, 4], vec![3]]
        );
        assert_eq!(super::together(&keys, |_| ""), [vec![0, 1, 2, 3, 4, 5]]);
    }
}
