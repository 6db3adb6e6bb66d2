//! An in-process engine for the backplane: several servers in one process share a [`Bus`], each
//! through an [`InProcess`] driver, with faults on demand (partition and heal, refused
//! publishes, a deaf subscription, delay). It keeps streams as the Redis scripts do (numbered
//! under an epoch, trimmed to the retention's size, tenures), without their expiry. It is for
//! tests of the backplane's own logic (outages, lost events, resyncs, subscriptions) without a
//! `redis-server`; the Redis tests stay the acceptance check of the Redis driver.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use super::driver::{
    AppendContext, Done, Driver, Fault, FaultKind, Inbox, Job, KeptEntry, ReadReply, ReadRequest,
    Reports,
};

/// What the in-process drivers of one test share: the channels and who listens to them, and
/// the streams.
pub(crate) struct Bus {
    state: Mutex<BusState>,
    next_id: AtomicUsize,
    /// The bus's clock (one for every server, as Redis's `TIME` is).
    born: std::time::Instant,
    /// The presence every server on the bus shares (entries never expire here).
    presence: Arc<crate::runtime::presence::Memory>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            state: Mutex::default(),
            next_id: AtomicUsize::new(0),
            born: std::time::Instant::now(),
            presence: Arc::default(),
        }
    }
}

#[derive(Default)]
struct BusState {
    /// Channel -> the drivers subscribed to it.
    subscribers: HashMap<String, HashSet<usize>>,
    drivers: HashMap<usize, Weak<InProcess>>,
    /// Stream hash key -> the stream.
    streams: HashMap<String, Kept>,
    /// Rate-limit key -> its theoretical arrival time, in microseconds of the bus's clock.
    rates: HashMap<String, u64>,
    /// Idempotent calls' answer slots (no expiry: a test's bus lives less than a window).
    answers: HashMap<String, Vec<u8>>,
}

/// One stream, as the append and read scripts keep it.
#[derive(Default)]
struct Kept {
    epoch: String,
    top: u64,
    entries: VecDeque<KeptEntry>,
    tenures: HashMap<String, u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One server's driver on a [`Bus`].
pub(crate) struct InProcess {
    bus: Arc<Bus>,
    id: usize,
    inbox: OnceLock<Weak<dyn Inbox>>,
    /// Cut off from the bus: every operation is `Unreachable`, and nothing arrives.
    partitioned: AtomicBool,
    /// Publishes (and appends) are refused; the rest works.
    refusing: AtomicBool,
    /// Batches run, but their answer does not come back in time (a timeout that ran).
    timing_out: AtomicBool,
    /// Messages for this driver are lost on the way (a subscription gone deaf), until it
    /// reconnects.
    deaf: AtomicBool,
    /// Every operation first waits this long (milliseconds).
    delay_ms: AtomicU64,
    /// How many times the backplane asked for a new connection.
    pub reconnects: AtomicU64,
    /// The engine's master moved (Sentinel's failover): the next `follow` says so.
    moved: AtomicBool,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").field("id", &self.id).finish()
    }
}

impl InProcess {
    pub fn new(bus: &Arc<Bus>) -> Arc<Self> {
        let id = bus.next_id.fetch_add(1, Relaxed);
        let driver = Arc::new(InProcess {
            bus: bus.clone(),
            id,
            inbox: OnceLock::new(),
            partitioned: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            timing_out: AtomicBool::new(false),
            deaf: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            moved: AtomicBool::new(false),
        });
        lock(&bus.state).drivers.insert(id, Arc::downgrade(&driver));
        driver
    }

    /// Cuts this server off the bus, as a lost connection: its backplane is told at once.
    pub fn partition(&self) {
        self.partitioned.store(true, Relaxed);
        if let Some(inbox) = self.inbox.get().and_then(Weak::upgrade) {
            inbox.disconnected();
        }
    }

    /// Ends a partition (its subscriptions held on the bus, as Redis's automatic
    /// resubscription would have them).
    pub fn heal(&self) {
        self.partitioned.store(false, Relaxed);
    }

    pub fn refuse_publishes(&self, on: bool) {
        self.refusing.store(on, Relaxed);
    }

    /// Batches still run, but their answer times out (the sender cannot know they ran).
    pub fn time_out_batches(&self, on: bool) {
        self.timing_out.store(on, Relaxed);
    }

    /// Messages for this server are lost until it reconnects (a subscription gone deaf).
    pub fn go_deaf(&self) {
        self.deaf.store(true, Relaxed);
    }

    /// A failover, as Sentinel's: the master this server talked to is gone with its
    /// subscriptions, and the next question of where it is names a new one.
    pub fn fail_over(&self) {
        let mut state = lock(&self.bus.state);
        for ids in state.subscribers.values_mut() {
            ids.remove(&self.id);
        }
        self.moved.store(true, Relaxed);
    }

    pub fn delay(&self, by: Duration) {
        self.delay_ms.store(by.as_millis() as u64, Relaxed);
    }

    /// Waits the delay, then says whether the bus can be reached.
    async fn reach(&self) -> Result<(), Fault> {
        let delay = self.delay_ms.load(Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        } else {
            // A round trip lets the other tasks run, as a network does.
            tokio::task::yield_now().await;
        }
        if self.partitioned.load(Relaxed) {
            return Err(Fault::new(
                FaultKind::Unreachable,
                "partitioned from the bus",
            ));
        }
        Ok(())
    }

    /// Hands `body` to every driver subscribed to `channel` that can hear it.
    fn publish(&self, state: &BusState, channel: &str, body: &[u8]) {
        let Some(ids) = state.subscribers.get(channel) else {
            return;
        };
        for id in ids {
            let Some(driver) = state.drivers.get(id).and_then(Weak::upgrade) else {
                continue;
            };
            if driver.partitioned.load(Relaxed) || driver.deaf.load(Relaxed) {
                continue;
            }
            if let Some(inbox) = driver.inbox.get().and_then(Weak::upgrade) {
                inbox.message(channel.as_bytes(), body);
            }
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let mut state = lock(&self.bus.state);
        state.drivers.remove(&self.id);
        for ids in state.subscribers.values_mut() {
            ids.remove(&self.id);
        }
    }
}

impl Driver for InProcess {
    fn attach(&self, inbox: Weak<dyn Inbox>) {
        let _ = self.inbox.set(inbox);
    }

    fn send<'a>(&'a self, batch: &'a [Job], ctx: &'a AppendContext) -> Done<'a, ()> {
        Box::pin(async move {
            self.reach().await?;
            if self.refusing.load(Relaxed) {
                return Err(Fault::new(FaultKind::Refused, "publishes are refused"));
            }
            let mut state = lock(&self.bus.state);
            for job in batch {
                match job {
                    Job::Publish(channel, body) => self.publish(&state, channel, body),
                    Job::Append {
                        keys,
                        channel,
                        frame,
                        latest,
                        retention,
                    } => {
                        let kept = state.streams.entry(keys.0.clone()).or_default();
                        if kept.epoch.is_empty() {
                            kept.epoch = crate::runtime::history::new_epoch();
                        }
                        kept.top += 1;
                        let top = kept.top;
                        if retention.size > 0 {
                            kept.entries.push_back(KeptEntry {
                                seq: top,
                                at_ms: ctx.now_ms,
                                frame: frame.clone(),
                                latest: latest.to_string(),
                            });
                            while kept.entries.len() > retention.size {
                                kept.entries.pop_front();
                            }
                        }
                        let mut body = ctx.head.clone();
                        body.push(kept.epoch.len() as u8);
                        body.extend_from_slice(kept.epoch.as_bytes());
                        body.extend_from_slice(top.to_string().as_bytes());
                        body.push(b':');
                        body.extend_from_slice(frame);
                        self.publish(&state, channel, &body);
                    }
                }
            }
            if self.timing_out.load(Relaxed) {
                return Err(Fault::new(FaultKind::Timeout, "no answer in time"));
            }
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            for c in channels {
                state
                    .subscribers
                    .entry(c.clone())
                    .or_default()
                    .insert(self.id);
            }
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            for c in channels {
                if let Some(ids) = state.subscribers.get_mut(c) {
                    ids.remove(&self.id);
                }
            }
            Ok(())
        })
    }

    fn read<'a>(&'a self, r: ReadRequest<'a>) -> Done<'a, ReadReply> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            let kept = state.streams.entry(r.meta.to_owned()).or_default();
            if kept.epoch.is_empty() {
                kept.epoch = r.new_epoch.clone();
            }
            let top = kept.top;
            let since: i64 = match r.tenure_field {
                "" => -2,
                "-" => -1,
                field => match kept.tenures.get(field) {
                    Some(since) if !r.fresh => *since as i64,
                    had => {
                        if had.is_some() || kept.tenures.len() < r.max_tenures {
                            kept.tenures.insert(field.to_owned(), top);
                        }
                        -1
                    }
                },
            };
            let mut reply = ReadReply {
                epoch: kept.epoch.clone(),
                top,
                entries: Vec::new(),
                since,
            };
            let from = r.from;
            let recoverable = r.asked_epoch == kept.epoch
                && from <= top.saturating_add(1)
                && top.saturating_add(1).saturating_sub(from) < r.count as u64
                && !(since == -1 || (since >= 0 && since as u64 > from.saturating_sub(1)));
            if recoverable {
                reply.entries = (kept.entries.iter())
                    .filter(|e| e.seq >= from)
                    .take(r.count)
                    .cloned()
                    .collect();
            }
            Ok(reply)
        })
    }

    fn rate<'a>(&'a self, key: &'a str, interval_us: u64, period_us: u64) -> Done<'a, u64> {
        Box::pin(async move {
            self.reach().await?;
            // The GCRA of the Redis script, on the bus's clock.
            let now = self.bus.born.elapsed().as_micros() as u64;
            let mut state = lock(&self.bus.state);
            let tat = state.rates.get(key).copied().unwrap_or(now).max(now);
            let next = tat + interval_us;
            let wait = next.saturating_sub(now).saturating_sub(period_us);
            if wait > 0 {
                return Ok(wait);
            }
            state.rates.insert(key.to_owned(), next);
            Ok(0)
        })
    }

    fn claim<'a>(&'a self, key: &'a str, _ttl_ms: u64) -> Done<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            if let Some(held) = state.answers.get(key) {
                return Ok(Some(held.clone()));
            }
            state.answers.insert(key.to_owned(), b"R".to_vec());
            Ok(None)
        })
    }

    fn keep<'a>(&'a self, key: &'a str, value: &'a [u8], _ttl_ms: u64) -> Done<'a, ()> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            if value.is_empty() {
                state.answers.remove(key);
            } else {
                state.answers.insert(key.to_owned(), value.to_vec());
            }
            Ok(())
        })
    }

    fn presence_store(
        &self,
        _ttl: Duration,
        _reports: Weak<dyn Reports>,
    ) -> Arc<dyn crate::runtime::presence::Store> {
        self.bus.presence.clone()
    }

    fn forget<'a>(&'a self, tenures: &'a [(String, String)]) -> Done<'a, ()> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            for (meta, field) in tenures {
                if let Some(kept) = state.streams.get_mut(meta) {
                    kept.tenures.remove(field);
                }
            }
            Ok(())
        })
    }

    fn seed<'a>(&'a self, meta: &'a str, fields: &'a [String]) -> Done<'a, ()> {
        Box::pin(async move {
            self.reach().await?;
            let mut state = lock(&self.bus.state);
            let kept = state.streams.entry(meta.to_owned()).or_default();
            for field in fields {
                kept.tenures.entry(field.clone()).or_insert(0);
            }
            Ok(())
        })
    }

    fn reconnect(&self, _channels: Vec<String>) {
        // A new connection: it hears again, and it holds no subscription until the backplane
        // makes them anew (as a new Redis connection would).
        self.reconnects.fetch_add(1, Relaxed);
        let mut state = lock(&self.bus.state);
        for ids in state.subscribers.values_mut() {
            ids.remove(&self.id);
        }
        self.deaf.store(false, Relaxed);
    }

    fn renew<'a>(&'a self, _channels: &'a [String]) -> Done<'a, bool> {
        Box::pin(async { Ok(false) })
    }

    fn follow(&self) -> Done<'_, Option<String>> {
        Box::pin(async move {
            self.reach().await?;
            Ok(self
                .moved
                .swap(false, Relaxed)
                .then(|| "the new master".to_owned()))
        })
    }

    fn close(&self) {}
}
