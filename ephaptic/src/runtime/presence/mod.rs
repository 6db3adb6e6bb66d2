//! Presence: who is in a group, with typed metadata, on one server and across many.
//!
//! A connection tracks itself in a group with a meta (`caller.presence("room:1").track(meta)`);
//! its entry goes when it untracks or closes. Members are identities (`s:alice`), not
//! connections: a user with three tabs is one member with three connections, joining with the
//! first and leaving with the last. Where the entries live is a [`Store`]: this server's
//! memory, or Redis with entries that expire unless their server refreshes them.
//!
//! Clients watch a group through reserved calls (`__ephaptic.presence.watch`: authorise,
//! subscribe, answer a snapshot) and then receive diffs as `__ephaptic.presence` events sent to
//! an internal group (`__ephaptic.presence:<group>`) through the delivery seam, so diffs cross
//! servers on the existing group channels. Changes are batched per group (every 200 ms by
//! default, bounded per frame), so a mass reconnect is a few frames, not a storm. Old clients
//! never call these names, never join the internal group, and see nothing.

mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(crate) use self::store::{Changes, Entry, Listing, Memory, Mine, Store};
#[cfg(feature = "redis")]
pub(crate) use self::store::{Joined, Left};
use super::delivery::Outgoing;
use super::scope::current;
use super::state::State;
use crate::error::Error;
use crate::handler::{Audience, BoxFuture, Caller};
use crate::session::{Connection, Topic};
use crate::wire::RawFrame;

/// The event name diffs travel under (old clients never listen for it).
pub const EVENT: &str = "__ephaptic.presence";
/// The reserved calls' common prefix.
const CALLS: &str = "__ephaptic.presence.";
/// The internal group a group's watchers join.
const WATCHERS: &str = "__ephaptic.presence:";

/// The most groups one connection may watch at once (each is a hub membership and, with
/// Redis, a subscription).
pub(crate) const MAX_WATCHES: usize = 256;
/// The longest group name a client may name in a presence call, in bytes.
const MAX_GROUP: usize = 1024;

/// The hub group of `group`'s watchers.
fn watchers(group: &str) -> String {
    format!("{WATCHERS}{group}")
}

/// One connection of a member, with its meta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceConn<M> {
    /// The connection, unique across servers (`<server>:<number>`).
    pub id: String,
    /// What the connection tracked itself with.
    pub meta: M,
}

/// A member of a group: one identity (or one anonymous connection) and its connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceMember<M> {
    /// The member: the identity's key (`s:alice`, `i:7`), or `c:<connection>` for an anonymous
    /// connection.
    pub key: String,
    /// Its connections in the group (each tab, each device), at least one.
    pub connections: Vec<PresenceConn<M>>,
}

impl<M> PresenceMember<M> {
    /// The member's identity; `None` for an anonymous connection.
    pub fn identity(&self) -> Option<crate::Identity> {
        crate::Identity::from_key(&self.key)
    }
}

/// Connections that left a group, by member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceLeave {
    /// The member.
    pub key: String,
    /// The ids of its connections that left.
    pub connections: Vec<String>,
}

/// What changed in a group since the last diff: connections that joined (or changed their
/// meta: a join of a connection already present replaces its meta) and connections that left,
/// by member. A member whose first connection joins is new; one whose last connection leaves is
/// gone. Sent to a group's watchers as the event `__ephaptic.presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceDiff<M> {
    /// The group.
    pub group: String,
    pub joins: Vec<PresenceMember<M>>,
    pub leaves: Vec<PresenceLeave>,
}

/// A group's members now, at most the list cap of them, and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceList<M> {
    /// The group.
    pub group: String,
    /// Sorted by key.
    pub members: Vec<PresenceMember<M>>,
    /// Whether members were left out (more than the server's list cap): use `users`.
    pub truncated: bool,
    /// Members in the group.
    #[ts(type = "number")]
    pub users: u64,
    /// Connections in the group.
    #[ts(type = "number")]
    pub connections: u64,
}

/// How many are in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct PresenceCount {
    /// Members (identities).
    #[ts(type = "number")]
    pub users: u64,
    /// Connections.
    #[ts(type = "number")]
    pub connections: u64,
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
    watched: Mutex<HashMap<String, HashSet<u64>>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decodes one stored meta for a diff or a snapshot (it was encoded by this crate).
fn value_of(meta: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &meta[..]).unwrap_or(rmpv::Value::Nil)
}

/// Entries sorted by member, as members.
fn members<M>(
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

fn listing_into<M>(
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

    async fn track(
        &self,
        state: &Arc<State>,
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
            let (max, tracked) = (state.hub.rules().max_groups, list.len());
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
        if !state.hub.is_open(conn.id()) {
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

    async fn untrack(&self, state: &Arc<State>, conn: &Arc<Connection>, group: &str) -> bool {
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
    pub fn closed(&self, state: &Arc<State>, conn: &Arc<Connection>) {
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
                    Ok(changes) => state.presence.queue(&state, &t.group, changes),
                    Err(e) => {
                        store_failed("untrack", &t.group, e);
                    }
                }
            }
        });
    }

    /// Adds what a store operation changed to its group's next diff, and makes sure a flush
    /// is coming.
    fn queue(&self, state: &Arc<State>, group: &str, changes: Changes) {
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
                    state.presence.flushing.store(false, Relaxed);
                    state.presence.flush(&state);
                }
            });
        }
    }

    /// Sends each group's waiting changes to its watchers, in frames of at most `batch_max`
    /// connections and `max_snapshot` bytes.
    fn flush(&self, state: &State) {
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
                    state.delivery.deliver(Outgoing {
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
    fn start_heartbeat(&self, state: &Arc<State>) {
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
                state.presence.beat(&state).await;
            }
        });
    }

    /// One heartbeat: refresh what this server tracks, sweep what it watches.
    async fn beat(&self, state: &Arc<State>) {
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

    async fn listing(&self, state: &Arc<State>, group: &str, cap: usize) -> Result<Listing, Error> {
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
    async fn allowed(&self, caller: &Caller, conn: &Connection, group: &str) -> bool {
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
fn forbidden(group: &str) -> Error {
    Error::new(
        "FORBIDDEN",
        format!("Not allowed to see the presence of group {group:?}."),
    )
}

/// The running server, or the error a presence call outside one gets.
fn server() -> Result<Arc<State>, Error> {
    current().ok_or_else(|| Error::internal("presence was used but no ephaptic server is running"))
}

/// A group's presence, as a caller's connection sees it: [`Caller::presence`].
#[derive(Debug, Clone)]
pub struct CallerPresence<'a> {
    caller: &'a Caller,
    group: String,
}

impl Caller {
    /// This connection's presence in `group`: [`track`](CallerPresence::track) it with a meta,
    /// [`untrack`](CallerPresence::untrack) it, or list the group. The entry goes by itself when
    /// the connection closes. Members are identities: a user's tabs make one member.
    ///
    /// ```
    /// # use ephaptic::Caller;
    /// #[ephaptic::model]
    /// pub struct Online { pub name: String }
    /// ephaptic::presence_meta!(Online);
    ///
    /// #[ephaptic::expose]
    /// async fn enter(caller: Caller, room: String, name: String) -> ephaptic::Result<()> {
    ///     let group = format!("room:{room}");
    ///     caller.join(&group); // its events, and by default the right to watch its presence
    ///     caller.presence(&group).track(Online { name }).await
    /// }
    /// ```
    pub fn presence(&self, group: &str) -> CallerPresence<'_> {
        CallerPresence {
            caller: self,
            group: group.to_owned(),
        }
    }
}

impl CallerPresence<'_> {
    /// Tracks this connection in the group with `meta`, or replaces its meta when it is tracked
    /// already. The group's watchers hear of it in the next diff.
    pub async fn track<M: Serialize>(&self, meta: M) -> Result<(), Error> {
        let state = server()?;
        named(&state, &self.group)?;
        let meta = crate::wire::reply::encoded(&meta)
            .map_err(|e| Error::internal(format!("the presence meta cannot be encoded: {e}")))?;
        state
            .presence
            .track(&state, self.caller.connection(), &self.group, meta)
            .await
    }

    /// Removes this connection from the group; `false` when it was not tracked in it.
    pub async fn untrack(&self) -> bool {
        let Ok(state) = server() else {
            return false;
        };
        if named(&state, &self.group).is_err() {
            return false;
        }
        state
            .presence
            .untrack(&state, self.caller.connection(), &self.group)
            .await
    }

    /// The group's members: see [`Presence::list`].
    pub async fn list<M: DeserializeOwned>(&self) -> Result<PresenceList<M>, Error> {
        presence(&self.group).list().await
    }

    /// The group's counts: see [`Presence::count`].
    pub async fn count(&self) -> Result<PresenceCount, Error> {
        presence(&self.group).count().await
    }
}

/// A group's presence, from anywhere in the server: [`presence`].
#[derive(Debug, Clone)]
pub struct Presence {
    group: String,
}

/// A group's presence on every server: list or count its members. No authorisation here
/// (this is your server's code); clients go through the server's
/// [`presence_authorize`](crate::Server::presence_authorize) hook.
///
/// ```no_run
/// # #[ephaptic::model] pub struct Online { pub name: String }
/// # async fn run() -> ephaptic::Result<()> {
/// let here = ephaptic::presence("room:1").list::<Online>().await?;
/// for member in &here.members {
///     println!("{} with {} tab(s)", member.key, member.connections.len());
/// }
/// let n = ephaptic::presence("room:1").count().await?;
/// # Ok(()) }
/// ```
pub fn presence(group: &str) -> Presence {
    Presence {
        group: group.to_owned(),
    }
}

impl Presence {
    /// The group's members, sorted by key, each with its connections and their metas: at most
    /// the server's list cap of members (1000 by default), `truncated` saying whether some
    /// were left out. A meta that does not read as `M` is an `INTERNAL` error.
    pub async fn list<M: DeserializeOwned>(&self) -> Result<PresenceList<M>, Error> {
        let state = server()?;
        named(&state, &self.group)?;
        let cap = state.presence.settings.list_cap;
        let listing = state.presence.listing(&state, &self.group, cap).await?;
        listing_into(&self.group, listing, |meta| {
            rmp_serde::from_slice(meta).map_err(|e| {
                Error::internal(format!(
                    "a presence meta in {:?} is not a {}: {e}",
                    self.group,
                    std::any::type_name::<M>()
                ))
            })
        })
    }

    /// How many members and connections the group has (cheap whatever its size).
    pub async fn count(&self) -> Result<PresenceCount, Error> {
        let state = server()?;
        named(&state, &self.group)?;
        let listing = state.presence.listing(&state, &self.group, 0).await?;
        Ok(PresenceCount {
            users: listing.users,
            connections: listing.connections,
        })
    }
}

/// Whether application code or a client may name `group` here: not one of the runtime's own
/// (`__ephaptic.`: a group's watchers), and not past the bound on group names.
fn named(state: &State, group: &str) -> Result<(), Error> {
    state
        .hub
        .rules()
        .group(group)
        .map_err(|why| Error::new(why.code(), why.to_string()))
}

/// What a reserved presence call asks.
enum Call {
    Watch,
    Unwatch,
    List,
    Count,
}

/// A reserved presence call (`__ephaptic.presence.watch|unwatch|list|count`, one argument:
/// the group): the future of its reply frame; `None` for any other name.
pub(crate) fn reserved(
    state: &Arc<State>,
    conn: &Arc<Connection>,
    name: &[u8],
    frame: &Bytes,
    raw: &RawFrame,
) -> Option<BoxFuture<Bytes>> {
    let call = match name.strip_prefix(CALLS.as_bytes())? {
        b"watch" => Call::Watch,
        b"unwatch" => Call::Unwatch,
        b"list" => Call::List,
        b"count" => Call::Count,
        _ => return None,
    };
    let id = match raw.id(frame) {
        [] => Bytes::from_static(crate::wire::NIL),
        id => Bytes::copy_from_slice(id),
    };
    let group = raw
        .args
        .first()
        .map(|s| s.of(frame))
        .or_else(|| {
            raw.kwargs
                .iter()
                .find(|(k, _)| k.of(frame) == b"\xa5group")
                .map(|(_, v)| v.of(frame))
        })
        .and_then(|v| rmp_serde::from_slice::<String>(v).ok());
    let state = state.clone();
    let conn = conn.clone();
    Some(Box::pin(async move {
        let debug = state.config.debug;
        let answer = match group {
            Some(group) if group.len() <= MAX_GROUP => match named(&state, &group) {
                Ok(()) => answer(&state, &conn, call, group, &id).await,
                Err(e) => Err(e),
            },
            _ => Err(Error::new(
                "VALIDATION_ERROR",
                format!(
                    "A presence call takes one argument: the group's name (a string of at most \
                     {MAX_GROUP} bytes)."
                ),
            )),
        };
        answer.unwrap_or_else(|e| e.to_frame(&id, debug))
    }))
}

/// A reserved call's result frame.
async fn answer(
    state: &Arc<State>,
    conn: &Arc<Connection>,
    call: Call,
    group: String,
    id: &[u8],
) -> Result<Bytes, Error> {
    let tracker = &state.presence;
    let caller = Caller::new(conn.clone(), state.hub.clone());
    match call {
        Call::Unwatch => {
            if let Some(conns) = lock(&tracker.watched).get_mut(&group) {
                conns.remove(&conn.id());
            }
            let left = state.hub.leave(conn, &watchers(&group));
            return result(id, &left);
        }
        _ if !tracker.allowed(&caller, conn, &group).await => return Err(forbidden(&group)),
        Call::Count => {
            let listing = tracker.listing(state, &group, 0).await?;
            let count = PresenceCount {
                users: listing.users,
                connections: listing.connections,
            };
            return result(id, &count);
        }
        Call::Watch => {
            // Subscribed before the snapshot is read, so that no change falls between them
            // (one seen twice is harmless: diffs are idempotent).
            let name = watchers(&group);
            let watching = conn.groups();
            let watching = watching.iter().filter(|g| g.starts_with(WATCHERS));
            if watching.count() >= MAX_WATCHES && !conn.in_group(&name) {
                return Err(Error::new(
                    "TOO_MANY_WATCHES",
                    format!(
                        "This connection watches {MAX_WATCHES} groups' presence, the most it may; \
                         unwatch one first."
                    ),
                )
                .with_data(
                    &[("limit", MAX_WATCHES)]
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                ));
            }
            state.hub.join(conn, &name);
            lock(&tracker.watched)
                .entry(group.clone())
                .or_default()
                .insert(conn.id());
            // Watched groups are swept at each heartbeat, so that the leaves of a crashed
            // server's members reach this server's watchers even when it tracks no one.
            tracker.start_heartbeat(state);
            if let Some(ready) = state.hub.ready(Topic::Group(&name)) {
                ready.await;
            }
        }
        Call::List => {}
    }
    let listing = tracker
        .listing(state, &group, tracker.settings.list_cap)
        .await?;
    let list = listing_into(&group, listing, |meta| Ok(value_of(meta)))?;
    result(id, &list)
}

/// A reserved call's result frame (structs as maps, as every result).
fn result<T: Serialize>(id: &[u8], value: &T) -> Result<Bytes, Error> {
    crate::wire::reply::result_frame(id, value).map_err(Error::internal)
}

/// Declares the type connections track themselves with, so that the generated `schema.ts`
/// types presence with it: the event `__ephaptic.presence` (`PresenceDiff<Meta>`) and the
/// client's `client.presence<Meta>(group)`. Once per application; the type must derive
/// TypeScript (`#[ephaptic::model]`). Apps whose groups track different shapes use an enum.
///
/// ```
/// #[ephaptic::model]
/// pub struct Online { pub name: String, pub typing: bool }
///
/// ephaptic::presence_meta!(Online);
/// ```
#[macro_export]
macro_rules! presence_meta {
    ($meta:ty) => {
        const _: () = {
            fn __ephaptic_presence_ty() -> $crate::__private::ts::TypeInfo {
                $crate::__private::ts::TypeInfo::of::<$crate::PresenceDiff<$meta>>()
            }
            static __EPHAPTIC_PRESENCE: $crate::__private::EventDef = $crate::__private::EventDef {
                name: $crate::__private::PRESENCE_EVENT,
                site: $crate::__private::Site {
                    rust_name: ::std::stringify!($meta),
                    module: ::std::module_path!(),
                    file: ::std::file!(),
                    line: ::std::line!(),
                },
                doc: "Presence diffs of the groups this client watches (`client.presence(group)`).",
                ty: __ephaptic_presence_ty,
            };
            $crate::__private::inventory::submit! {
                $crate::__private::Registration::Event(&__EPHAPTIC_PRESENCE)
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_group_into_members_in_order() {
        let e = |m: &str, c: &str| Entry {
            member: m.into(),
            conn: c.into(),
            meta: Bytes::from_static(b"\x01"),
        };
        let got = members(vec![e("a", "1"), e("a", "2"), e("b", "3")], |m| Ok(m[0])).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].connections.len(), 2);
        assert_eq!(got[1].key, "b");
    }

    #[test]
    fn reserved_names_are_only_the_presence_calls() {
        assert_eq!(watchers("room:1"), "__ephaptic.presence:room:1");
        assert!(EVENT.starts_with("__ephaptic."));
    }
}
