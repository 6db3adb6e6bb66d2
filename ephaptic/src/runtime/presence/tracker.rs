//! The presence tracker of one server: what its connections tracked, the per-group batches
//! of diffs and their flush through the delivery seam, the heartbeat, and the bounds on metas
//! and lists. It reaches its server only through [`Host`] (the hub, the delivery seam, itself),
//! so that the server's `State` can hold it without a circle; the public handles and the
//! reserved calls that find the running server are in `handles.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::store::{Changes, Entry, Listing, Memory, Mine, Store};
use super::types::{
    EVENT, PresenceConn, PresenceDiff, PresenceLeave, PresenceList, PresenceMember, watchers,
};
use crate::error::Error;
use crate::handler::{Audience, BoxFuture, Caller};
use crate::runtime::delivery::{Delivery, Outgoing};
use crate::session::{Connection, Hub};

/// What the tracker needs of its server: the hub (who is open, the name rules), the delivery
/// seam (diffs), and the tracker itself (for the tasks it starts, which hold the server weakly).
pub(crate) trait Host: Send + Sync + 'static {
    fn hub(&self) -> &Hub;
    fn delivery(&self) -> &dyn Delivery;
    fn tracker(&self) -> &Tracker;
}

/// Who may watch, list or count a group's presence: `(caller, group) -> allowed`.
pub(crate) type Authorize = Arc<dyn Fn(Caller, String) -> BoxFuture<bool> + Send + Sync>;

/// A server's presence settings, as the builder collected them.
#[derive(Clone)]
pub(crate) struct Settings {
    /// How often batched diffs are sent.
    pub batch_every: Duration,
    /// Connections (joined or left) in one diff frame at most.
    pub batch_max: usize,
    /// Members a list or a snapshot holds at most.
    pub list_cap: usize,
    /// The largest meta (encoded) a connection may track itself with.
    pub max_meta: usize,
    /// Bytes of members a list, a snapshot or one diff frame holds at most.
    pub max_snapshot: usize,
    pub authorize: Option<Authorize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_every: Duration::from_millis(200),
            batch_max: 256,
            list_cap: 1000,
            max_meta: 4 << 10,
            max_snapshot: 512 << 10,
            authorize: None,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("batch_every", &self.batch_every)
            .field("batch_max", &self.batch_max)
            .field("list_cap", &self.list_cap)
            .field("max_meta", &self.max_meta)
            .field("max_snapshot", &self.max_snapshot)
            .field("authorize", &self.authorize.is_some())
            .finish()
    }
}

/// One group's presence on this server, as the inspector shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalGroup {
    pub group: Arc<str>,
    /// Distinct members (identities, or anonymous connections) tracked here.
    pub members: usize,
    /// Connections of this server tracked in it.
    pub connections: usize,
    /// Connections of this server that watch it.
    pub watchers: usize,
}

/// A connection's entry, as this server remembers it (to untrack at close, to refresh).
#[derive(Debug, Clone)]
struct Tracked {
    group: Arc<str>,
    member: String,
    meta: Bytes,
}

/// Connections joined and left in one group since the last flush, latest first-come order.
#[derive(Debug, Default)]
struct Pending {
    /// (member, connection) -> its meta when it is in, `None` when it left.
    changes: BTreeMap<(String, String), Option<Bytes>>,
}

/// One server's presence: the store, what this server tracked, and the batches waiting.
pub(crate) struct Tracker {
    store: Arc<dyn Store>,
    /// Names this server's connections across servers.
    node: String,
    pub(crate) settings: Settings,
    /// Connection id -> its entries.
    local: Mutex<HashMap<u64, Vec<Tracked>>>,
    /// Group -> the connections of this server that watch it (groups to sweep).
    pub(super) watched: Mutex<HashMap<String, HashSet<u64>>>,
    pending: Mutex<HashMap<String, Pending>>,
    flushing: AtomicBool,
    beating: AtomicBool,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("store", &self.store)
            .field("node", &self.node)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decodes one stored meta for a diff or a snapshot (it was encoded by this crate).
pub(super) fn value_of(meta: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &meta[..]).unwrap_or(rmpv::Value::Nil)
}

/// Entries sorted by member, as members.
pub(super) fn members<M>(
    entries: Vec<Entry>,
    mut meta: impl FnMut(&[u8]) -> Result<M, Error>,
) -> Result<Vec<PresenceMember<M>>, Error> {
    let mut out: Vec<PresenceMember<M>> = Vec::new();
    for e in entries {
        let conn = PresenceConn {
            id: e.conn,
            meta: meta(&e.meta)?,
        };
        match out.last_mut() {
            Some(m) if m.key == e.member => m.connections.push(conn),
            _ => out.push(PresenceMember {
                key: e.member,
                connections: vec![conn],
            }),
        }
    }
    Ok(out)
}

/// What one presence entry costs a frame, about: its member key, connection id and meta, and
/// the map around them.
fn entry_bytes(member: &str, conn: &str, meta: &[u8]) -> usize {
    member.len() + conn.len() + meta.len() + 24
}

/// Cuts a listing to whole members of at most `max` bytes together (`truncated` when some were
/// left out), so that no list or snapshot frame grows with the metas' size: 200 members with
/// 900 KB metas made one 180 MB frame.
fn bound_bytes(listing: &mut Listing, max: usize) {
    let (mut bytes, mut member_start) = (0, 0);
    for i in 0..listing.entries.len() {
        let e = &listing.entries[i];
        if i > 0 && listing.entries[i - 1].member != e.member {
            member_start = i;
        }
        bytes += entry_bytes(&e.member, &e.conn, &e.meta);
        if bytes > max {
            listing.entries.truncate(member_start);
            listing.truncated = true;
            return;
        }
    }
}

/// The `data` of an error about a size.
#[derive(Serialize)]
struct SizeLimit {
    size: usize,
    limit: usize,
}

pub(super) fn listing_into<M>(
    group: &str,
    listing: Listing,
    meta: impl FnMut(&[u8]) -> Result<M, Error>,
) -> Result<PresenceList<M>, Error> {
    Ok(PresenceList {
        group: group.to_owned(),
        members: members(listing.entries, meta)?,
        truncated: listing.truncated,
        users: listing.users,
        connections: listing.connections,
    })
}

fn store_failed(what: &str, group: &str, e: String) -> Error {
    tracing::warn!(group = %crate::session::names::for_log(group), "presence {what} failed: {e}");
    Error::internal(format!("presence {what} failed: {e}"))
}

impl Tracker {
    /// A tracker on `store`; `node` names this server's connections (`<node>:<id>`).
    pub fn new(store: Arc<dyn Store>, node: String, settings: Settings) -> Self {
        Tracker {
            store,
            node,
            settings,
            local: Mutex::default(),
            watched: Mutex::default(),
            pending: Mutex::default(),
            flushing: AtomicBool::new(false),
            beating: AtomicBool::new(false),
        }
    }

    /// How many presence entries (a connection tracked in a group) this server holds.
    pub fn tracked(&self) -> usize {
        lock(&self.local).values().map(Vec::len).sum()
    }

    /// The groups this server's connections track themselves in, with how many members
    /// (identities, or anonymous connections) and connections of this server each holds, and
    /// how many of its connections watch each; sorted by name. (With Redis, the other servers'
    /// entries are theirs to show.)
    pub fn local_groups(&self) -> Vec<LocalGroup> {
        let mut out: Vec<LocalGroup> = {
            let local = lock(&self.local);
            let mut groups: BTreeMap<&Arc<str>, (HashSet<&str>, usize)> = BTreeMap::new();
            for t in local.values().flatten() {
                let g = groups.entry(&t.group).or_default();
                g.0.insert(&t.member);
                g.1 += 1;
            }
            let watched = lock(&self.watched);
            groups
                .into_iter()
                .map(|(group, (members, connections))| LocalGroup {
                    watchers: watched.get(&**group).map_or(0, HashSet::len),
                    group: group.clone(),
                    members: members.len(),
                    connections,
                })
                .collect()
        };
        let watched = lock(&self.watched);
        for (group, conns) in watched.iter() {
            if !out.iter().any(|g| *g.group == **group) {
                out.push(LocalGroup {
                    group: Arc::from(group.as_str()),
                    members: 0,
                    connections: 0,
                    watchers: conns.len(),
                });
            }
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// In memory, for one server.
    pub fn memory(settings: Settings) -> Self {
        Tracker::new(Arc::new(Memory::default()), "local".into(), settings)
    }

    fn conn_key(&self, conn: &Connection) -> String {
        format!("{}:{}", self.node, conn.id())
    }

    fn member_key(&self, conn: &Connection) -> String {
        match conn.identity() {
            Some(id) => id.key(),
            None => format!("c:{}", self.conn_key(conn)),
        }
    }

    pub(crate) async fn track<H: Host>(
        &self,
        state: &Arc<H>,
        conn: &Arc<Connection>,
        group: &str,
        meta: Bytes,
    ) -> Result<(), Error> {
        if meta.len() > self.settings.max_meta {
            return Err(Error::new(
                "META_TOO_LARGE",
                format!(
                    "The presence meta is {} bytes encoded, more than the {} a meta may have \
                     (Server::presence_max_meta); track less, and fetch the rest on demand.",
                    meta.len(),
                    self.settings.max_meta
                ),
            )
            .with_data(&SizeLimit {
                size: meta.len(),
                limit: self.settings.max_meta,
            }));
        }
        let member = self.member_key(conn);
        {
            // Remembered first: a close meanwhile untracks it.
            let mut local = lock(&self.local);
            let list = local.entry(conn.id()).or_default();
            let (max, tracked) = (state.hub().rules().max_groups, list.len());
            match list.iter_mut().find(|t| &*t.group == group) {
                Some(t) => t.meta = meta.clone(),
                None if tracked >= max => {
                    let why = crate::session::Refused::TooMany { max };
                    return Err(Error::new(why.code(), why.to_string())
                        .with_data(&[("limit", max)].into_iter().collect::<BTreeMap<_, _>>()));
                }
                None => list.push(Tracked {
                    group: group.into(),
                    member: member.clone(),
                    meta: meta.clone(),
                }),
            }
        }
        if !state.hub().is_open(conn.id()) {
            // Closed already (a track from `on_disconnect`, or racing the close): `closed` ran
            // before this entry existed, so nothing would ever untrack it.
            lock(&self.local).remove(&conn.id());
            return Ok(());
        }
        // Before the store is asked: an entry it refuses now (Redis away) is restored by a
        // heartbeat once it is back.
        self.start_heartbeat(state);
        let entry = Entry {
            member,
            conn: self.conn_key(conn),
            meta,
        };
        let changes = self
            .store
            .track(group, entry)
            .await
            .map_err(|e| store_failed("track", group, e))?;
        self.queue(state, group, changes);
        Ok(())
    }

    pub(crate) async fn untrack<H: Host>(
        &self,
        state: &Arc<H>,
        conn: &Arc<Connection>,
        group: &str,
    ) -> bool {
        let member = {
            let mut local = lock(&self.local);
            let Some(list) = local.get_mut(&conn.id()) else {
                return false;
            };
            let Some(at) = list.iter().position(|t| &*t.group == group) else {
                return false;
            };
            let t = list.swap_remove(at);
            if list.is_empty() {
                local.remove(&conn.id());
            }
            t.member
        };
        match self
            .store
            .untrack(group, &member, &self.conn_key(conn))
            .await
        {
            Ok(changes) => self.queue(state, group, changes),
            Err(e) => {
                store_failed("untrack", group, e);
            }
        }
        true
    }

    /// A connection closed: its entries go, and it watches nothing any more. Called once the
    /// hub has forgot it (so a `track` that comes later sees it closed); the store is told in a
    /// task of its own.
    pub fn closed<H: Host>(&self, state: &Arc<H>, conn: &Arc<Connection>) {
        {
            let mut watched = lock(&self.watched);
            watched.retain(|_, conns| {
                conns.remove(&conn.id());
                !conns.is_empty()
            });
        }
        let Some(tracked) = lock(&self.local).remove(&conn.id()) else {
            return;
        };
        let conn_key = self.conn_key(conn);
        let state = Arc::downgrade(state);
        let store = self.store.clone();
        tokio::spawn(async move {
            for t in tracked {
                let result = store.untrack(&t.group, &t.member, &conn_key).await;
                let Some(state) = state.upgrade() else {
                    return;
                };
                match result {
                    Ok(changes) => state.tracker().queue(&state, &t.group, changes),
                    Err(e) => {
                        store_failed("untrack", &t.group, e);
                    }
                }
            }
        });
    }

    /// Adds what a store operation changed to its group's next diff, and makes sure a flush
    /// is coming.
    pub(crate) fn queue<H: Host>(&self, state: &Arc<H>, group: &str, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        {
            let mut pending = lock(&self.pending);
            let p = pending.entry(group.to_owned()).or_default();
            for j in changes.joined {
                p.changes.insert((j.member, j.conn), Some(j.meta));
            }
            for l in changes.left {
                p.changes.insert((l.member, l.conn), None);
            }
        }
        if !self.flushing.swap(true, Relaxed) {
            let state = Arc::downgrade(state);
            let every = self.settings.batch_every;
            tokio::spawn(async move {
                tokio::time::sleep(every).await;
                if let Some(state) = state.upgrade() {
                    // Cleared before taking the batch: a change queued meanwhile starts the next.
                    state.tracker().flushing.store(false, Relaxed);
                    state.tracker().flush(&*state);
                }
            });
        }
    }

    /// Sends each group's waiting changes to its watchers, in frames of at most `batch_max`
    /// connections and `max_snapshot` bytes.
    fn flush<H: Host>(&self, state: &H) {
        let batches = std::mem::take(&mut *lock(&self.pending));
        let max = self.settings.batch_max.max(1);
        for (group, batch) in batches {
            let audience = Audience::Group(watchers(&group));
            let all: Vec<_> = batch.changes.into_iter().collect();
            let mut chunks = Vec::new();
            let (mut start, mut bytes) = (0, 0);
            for (i, ((member, conn), meta)) in all.iter().enumerate() {
                let cost = entry_bytes(member, conn, meta.as_deref().unwrap_or_default());
                if i > start && (i - start == max || bytes + cost > self.settings.max_snapshot) {
                    chunks.push(&all[start..i]);
                    (start, bytes) = (i, 0);
                }
                bytes += cost;
            }
            if start < all.len() {
                chunks.push(&all[start..]);
            }
            for chunk in chunks {
                let mut diff = PresenceDiff::<rmpv::Value> {
                    group: group.clone(),
                    joins: Vec::new(),
                    leaves: Vec::new(),
                };
                for ((member, conn), meta) in chunk {
                    match meta {
                        Some(meta) => {
                            let c = PresenceConn {
                                id: conn.clone(),
                                meta: value_of(meta),
                            };
                            match diff.joins.last_mut() {
                                Some(m) if &m.key == member => m.connections.push(c),
                                _ => diff.joins.push(PresenceMember {
                                    key: member.clone(),
                                    connections: vec![c],
                                }),
                            }
                        }
                        None => match diff.leaves.last_mut() {
                            Some(m) if &m.key == member => m.connections.push(conn.clone()),
                            _ => diff.leaves.push(PresenceLeave {
                                key: member.clone(),
                                connections: vec![conn.clone()],
                            }),
                        },
                    }
                }
                // Presence diffs are not history: a client that missed some resyncs from a
                // snapshot (`watch`) instead of replaying them.
                if let Some(frame) = crate::handler::encode(EVENT, &diff) {
                    state.delivery().deliver(Outgoing {
                        audience: &audience,
                        name: EVENT,
                        frame,
                        keep: crate::runtime::delivery::Keep::Not,
                    });
                }
            }
        }
    }

    /// Starts refreshing this server's entries, once, when the store expires them.
    pub(crate) fn start_heartbeat<H: Host>(&self, state: &Arc<H>) {
        let Some(every) = self.store.heartbeat_every() else {
            return;
        };
        if self.beating.swap(true, Relaxed) {
            return;
        }
        let state = Arc::downgrade(state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else {
                    return;
                };
                state.tracker().beat(&state).await;
            }
        });
    }

    /// One heartbeat: refresh what this server tracks, sweep what it watches.
    pub(crate) async fn beat<H: Host>(&self, state: &Arc<H>) {
        let mine = {
            let local = lock(&self.local);
            let mut by_group: BTreeMap<Arc<str>, Vec<Entry>> = BTreeMap::new();
            for (id, list) in local.iter() {
                for t in list {
                    by_group.entry(t.group.clone()).or_default().push(Entry {
                        member: t.member.clone(),
                        conn: format!("{}:{id}", self.node),
                        meta: t.meta.clone(),
                    });
                }
            }
            by_group
                .into_iter()
                .map(|(group, entries)| Mine {
                    group: group.to_string(),
                    entries,
                })
                .collect::<Vec<_>>()
        };
        let sweep: Vec<String> = {
            let watched = lock(&self.watched);
            watched
                .keys()
                .filter(|g| !mine.iter().any(|m| &m.group == *g))
                .cloned()
                .collect()
        };
        for (group, changes) in self.store.heartbeat(mine, sweep).await {
            self.queue(state, &group, changes);
        }
    }

    pub(crate) async fn listing<H: Host>(
        &self,
        state: &Arc<H>,
        group: &str,
        cap: usize,
    ) -> Result<Listing, Error> {
        let mut listing = self
            .store
            .list(group, cap)
            .await
            .map_err(|e| store_failed("list", group, e))?;
        self.queue(state, group, std::mem::take(&mut listing.expired));
        bound_bytes(&mut listing, self.settings.max_snapshot);
        Ok(listing)
    }

    /// Whether `caller` may see `group`'s presence: the server's hook decides; without one, a
    /// connection that joined the group or tracks itself in it may.
    pub(crate) async fn allowed(&self, caller: &Caller, conn: &Connection, group: &str) -> bool {
        match &self.settings.authorize {
            Some(hook) => hook(caller.clone(), group.to_owned()).await,
            None => {
                conn.in_group(group)
                    || lock(&self.local)
                        .get(&conn.id())
                        .is_some_and(|l| l.iter().any(|t| &*t.group == group))
            }
        }
    }
}

/// The error a caller gets when the authorisation hook refuses it a group's presence.
pub(super) fn forbidden(group: &str) -> Error {
    Error::new(
        "FORBIDDEN",
        format!("Not allowed to see the presence of group {group:?}."),
    )
}
