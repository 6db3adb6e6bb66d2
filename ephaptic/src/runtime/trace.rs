//! The inspector's live trace (`Server::inspector`): what the connections of a few identities
//! called and were sent, as the inspector page asks for them.
//!
//! A connection of a traced identity carries a flag (`Connection::traced`); its task reads the
//! flag once per message read and once per batch of writes, and only a flagged connection's
//! frames are summarised ([`summarize`]: kind, name, id, error code, size; never a value) into
//! its identity's log. Everyone else pays that relaxed load and nothing more, and nothing of their
//! frames is kept anywhere.
//!
//! Bounded: at most [`MAX_TRACED`] identities at once, the last [`KEPT`] frames of each, and a
//! trace nobody asked for in [`IDLE`] ends (its connections find no log at their next frame and
//! lower their flag).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::identity::Identity;
use crate::session::{Connection, Hub};
use crate::wire::summary::{Summary, summarize};

/// Identities traced at once, at most.
pub(crate) const MAX_TRACED: usize = 4;
/// Frames kept per traced identity (the newest).
pub(crate) const KEPT: usize = 200;
/// A trace nobody polled for this long ends.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// From the client (a call, a cancel).
    In,
    /// To the client (an answer, an event).
    Out,
}

/// One traced frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Numbers the identity's records from 1, so a reader can ask for what is new.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub connection: u64,
    pub way: Way,
    pub size: usize,
    pub summary: Summary,
}

/// One identity's log.
#[derive(Debug)]
struct Trace {
    records: VecDeque<Record>,
    next: u64,
    polled: Instant,
}

/// Why a trace could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not an identity key (`s:alice`, `i:7`, `b:1`, `u:<uuid>`).
    NotAKey,
    /// [`MAX_TRACED`] identities are traced already.
    Full(Vec<String>),
}

/// The traces of one server.
#[derive(Debug, Default)]
pub(crate) struct Tracer {
    /// How many identities are traced: a connection that gets its identity looks for a trace
    /// only when some are.
    active: AtomicUsize,
    traces: Mutex<HashMap<String, Trace>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Tracer {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Trace>> {
        self.traces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the traces nobody polled for [`IDLE`]; their connections lower their flags at
    /// their next frame.
    fn sweep(&self, traces: &mut HashMap<String, Trace>, now: Instant) {
        traces.retain(|_, t| now.duration_since(t.polled) < IDLE);
        self.active.store(traces.len(), Ordering::SeqCst);
    }

    /// The records of `key`'s identity after `after` (newest first), starting its trace if
    /// it has none (`true` then): its connections here are flagged, and so are those it opens
    /// later. Polling keeps a trace alive.
    pub fn poll(&self, hub: &Hub, key: &str, after: u64) -> Result<(bool, Vec<Record>), Refused> {
        let identity = Identity::from_key(key)
            .filter(|id| !id.too_long())
            .ok_or(Refused::NotAKey)?;
        let key = identity.key();
        let now = Instant::now();
        {
            let mut traces = self.lock();
            self.sweep(&mut traces, now);
            if let Some(trace) = traces.get_mut(&key) {
                trace.polled = now;
                let records = trace.records.iter().rev().take_while(|r| r.seq > after);
                return Ok((false, records.cloned().collect()));
            }
            if traces.len() >= MAX_TRACED {
                let mut keys: Vec<String> = traces.keys().cloned().collect();
                keys.sort_unstable();
                return Err(Refused::Full(keys));
            }
            traces.insert(
                key,
                Trace {
                    records: VecDeque::new(),
                    next: 1,
                    polled: now,
                },
            );
            self.active.store(traces.len(), Ordering::SeqCst);
        }
        // After the trace is in the table: a connection that gets this identity meanwhile
        // either is in the hub already (flagged here) or looks at the table after this.
        for conn in hub.connections_of(&identity) {
            conn.set_traced(true);
        }
        Ok((true, Vec::new()))
    }

    /// Ends `key`'s trace now (the page moved on to another identity).
    pub fn stop(&self, key: &str) {
        let Some(identity) = Identity::from_key(key) else {
            return;
        };
        let mut traces = self.lock();
        traces.remove(&identity.key());
        self.active.store(traces.len(), Ordering::SeqCst);
    }

    /// The identities traced now, sorted.
    pub fn traced(&self) -> Vec<String> {
        let mut traces = self.lock();
        self.sweep(&mut traces, Instant::now());
        let mut keys: Vec<String> = traces.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// `conn` was given `identity`: flagged when someone traces it.
    pub fn identified(&self, conn: &Connection, identity: &Identity) {
        if self.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        if self.lock().contains_key(&identity.key()) {
            conn.set_traced(true);
        }
    }

    /// Logs a frame of a flagged connection; lowers its flag when its identity's trace ended.
    #[cold]
    pub fn record(&self, conn: &Connection, way: Way, frame: &[u8]) {
        let Some(identity) = conn.identity() else {
            conn.set_traced(false);
            return;
        };
        let key = identity.key();
        let now = Instant::now();
        let mut traces = self.lock();
        let alive = traces
            .get(&key)
            .is_some_and(|t| now.duration_since(t.polled) < IDLE);
        if !alive {
            if traces.remove(&key).is_some() {
                self.active.store(traces.len(), Ordering::SeqCst);
            }
            drop(traces);
            conn.set_traced(false);
            return;
        }
        let Some(trace) = traces.get_mut(&key) else {
            return;
        };
        let seq = trace.next;
        trace.next += 1;
        if trace.records.len() == KEPT {
            trace.records.pop_front();
        }
        trace.records.push_back(Record {
            seq,
            at_ms: now_ms(),
            connection: conn.id(),
            way,
            size: frame.len(),
            summary: summarize(frame),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::outbound::{self, Policy, SlowClient};

    fn conn(hub: &Hub, id: u64, who: Option<&str>) -> Arc<Connection> {
        let (out, _rx) = outbound::channel(Arc::new(Policy::new(8, SlowClient::Disconnect)));
        let c = Connection::new(id, None, None, out);
        hub.add(&c);
        if let Some(who) = who {
            let identity = c.set_identity(Identity::from(who)).unwrap();
            hub.identify(&c, identity);
        }
        c
    }

    const RPC: &[u8] = b"\x84\xa4type\xa3rpc\xa2id\x01\xa4name\xa3add\xa4args\x91\xa6secret";

    #[test]
    fn only_the_traced_identitys_connections_are_flagged_and_logged() {
        let hub = Hub::default();
        let tracer = Tracer::default();
        let alice = conn(&hub, 1, Some("alice"));
        let bob = conn(&hub, 2, Some("bob"));
        assert_eq!(tracer.poll(&hub, "s:alice", 0), Ok((true, Vec::new())));
        assert!(alice.traced() && !bob.traced());
        // A second tab of alice's, identified after the trace started.
        let (out, _rx) = outbound::channel(Arc::new(Policy::new(8, SlowClient::Disconnect)));
        let tab = Connection::new(3, None, None, out);
        hub.add(&tab);
        let id = tab.set_identity(Identity::from("alice")).unwrap();
        hub.identify(&tab, id);
        tracer.identified(&tab, id);
        assert!(tab.traced());
        tracer.record(&alice, Way::In, RPC);
        tracer.record(&tab, Way::Out, b"\x82\xa2id\x01\xa6result\x03");
        let (started, got) = tracer.poll(&hub, "s:alice", 0).unwrap();
        assert!(!started);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[0].connection), (2, 3), "newest first");
        assert_eq!(got[1].summary.name.as_deref(), Some("add"));
        assert!(!format!("{got:?}").contains("secret"), "no values kept");
        assert_eq!(tracer.poll(&hub, "s:alice", 1).unwrap().1.len(), 1);
        assert_eq!(tracer.traced(), ["s:alice"]);
        tracer.stop("s:alice");
        tracer.record(&alice, Way::In, RPC);
        assert!(!alice.traced(), "a frame after the end lowers the flag");
    }

    #[test]
    fn traces_are_bounded_in_number_and_length() {
        let hub = Hub::default();
        let tracer = Tracer::default();
        let alice = conn(&hub, 1, Some("alice"));
        tracer.poll(&hub, "s:alice", 0).unwrap();
        for _ in 0..KEPT + 50 {
            tracer.record(&alice, Way::In, RPC);
        }
        let (_, got) = tracer.poll(&hub, "s:alice", 0).unwrap();
        assert_eq!(got.len(), KEPT);
        assert_eq!(got[0].seq, (KEPT + 50) as u64);
        for i in 1..MAX_TRACED {
            tracer.poll(&hub, &format!("i:{i}"), 0).unwrap();
        }
        assert!(matches!(
            tracer.poll(&hub, "s:zed", 0),
            Err(Refused::Full(keys)) if keys.len() == MAX_TRACED
        ));
        assert_eq!(tracer.poll(&hub, "nobody", 0), Err(Refused::NotAKey));
        // `n:` is the reference server's integer prefix: the same identity as `i:`.
        assert!(tracer.poll(&hub, "n:1", 0).is_ok());
    }
}
