//! Every open connection of one server: by connection id, by identity, and by group. The local
//! index that delivery reads. Joining and leaving groups happens here, so that a connection's
//! own list of groups and the index agree.
//!
//! The hub also knows when this server starts or stops holding connections of an identity or
//! a group: it tells an [`Interest`] (the backplane to other servers subscribes by it).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::connection::Connection;
use super::gate::Stamp;
use super::names::{NameRules, RESERVED, Refused};
use super::queue::weigh;
use super::stream::Stream;
use crate::identity::Identity;

/// Told when this server's first connection of an identity or a group arrives (`held`), and
/// when its last one leaves ([`Stream::User`], [`Stream::Group`]; never [`Stream::All`], which
/// every server holds). Called under the hub's lock: it must not block.
pub(crate) trait Interest: Send + Sync + fmt::Debug {
    fn changed(&self, topic: Stream<'_>, held: bool);

    /// Resolves once what other servers send about `topic` reaches this one (a backplane's
    /// subscription is confirmed), or when waiting longer would not help; `None` when there is
    /// nothing to wait for.
    fn ready(&self, _topic: Stream<'_>) -> Option<Ready> {
        None
    }
}

/// Told when a connection of a client that speaks sessions joins a group, to send it the
/// group's position (and what it missed of it): the runtime's side of a join.
pub(crate) trait Joined: Send + Sync + fmt::Debug {
    /// Whether joins are followed up (the server keeps history).
    fn active(&self) -> bool;
    /// `conn` joined `group`; the group's live events for it are held until it releases them.
    fn joined(&self, conn: &Arc<Connection>, group: &str);
    /// `conn` left `group` on purpose (not by closing): its identity's tenure there ends.
    fn left(&self, conn: &Arc<Connection>, group: &str);
}

/// What [`Interest::ready`] returns.
/// Resolves to `true` once subscribed, `false` when it gave up (a timeout, Redis away).
pub(crate) type Ready = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

#[derive(Debug, Default)]
pub(crate) struct Hub {
    conns: RwLock<HashMap<u64, Arc<Connection>>>,
    users: RwLock<HashMap<Identity, Members>>,
    groups: RwLock<HashMap<Arc<str>, Members>>,
    interest: Option<Arc<dyn Interest>>,
    joined: std::sync::OnceLock<Arc<dyn Joined>>,
    rules: NameRules,
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Offers `frame` to one of the connections it is offered to at once, `weight` being each one's
/// share of it (their queues share it, and the memory budget counts it about once).
fn offer(conn: &Connection, frame: &Bytes, stamp: Option<Stamp<'_>>, weight: u32) -> bool {
    match stamp {
        Some(stamp) => conn.push_event_at(frame.clone(), stamp, weight),
        None => conn.push_shared(frame.clone(), weight),
    }
}

/// The first `limit` items of `items` in `order`, sorted (the rest left unsorted): a partial
/// selection first, so that a hundred thousand items cost a linear pass, not a sort.
fn first_sorted<T>(
    items: &mut [T],
    limit: usize,
    mut order: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> &[T] {
    let n = limit.min(items.len());
    if n == 0 {
        return &[];
    }
    if n < items.len() {
        items.select_nth_unstable_by(n - 1, &mut order);
    }
    let shown = &mut items[..n];
    shown.sort_unstable_by(order);
    shown
}

/// Below this capacity a map or list is left as it is: shrinking it would save nothing.
const SHRINK_FLOOR: usize = 64;

/// Whether a collection of `len` items in `capacity` slots should give memory back: it keeps
/// its peak capacity otherwise, and a wave of 100,000 identities would leave a map of 100,000
/// slots behind. Only when it is an eighth full, and then to twice its size, so that the
/// rehash is paid for by the removals before it (at least half of the slots' worth).
fn too_roomy(len: usize, capacity: usize) -> bool {
    capacity > SHRINK_FLOOR && len * 8 < capacity
}

fn shrink_map<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if too_roomy(map.len(), map.capacity()) {
        map.shrink_to(map.len() * 2);
    }
}

/// Past this many members an index entry keeps each member's place in a map: below it a
/// leave walks the list (a few connections of one identity, a small room).
const PLACES_FROM: usize = 32;

/// The connections under one key of an index (an identity's, a group's), in a list that
/// deliveries walk. A leave moves the last member into the leaver's place; past
/// [`PLACES_FROM`] members the places are kept in a map, so that a crowd leaving at once (the
/// 10,000 members of a lobby at a deploy) costs each leave O(1), not a walk of the list (that
/// was 50 million steps for 10,000 leaves).
#[derive(Debug, Default)]
struct Members {
    list: Vec<Arc<Connection>>,
    /// Connection id to its index in `list`; `None` while the entry is small.
    places: Option<HashMap<u64, usize>>,
}

impl Members {
    fn as_slice(&self) -> &[Arc<Connection>] {
        &self.list
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn push(&mut self, conn: &Arc<Connection>) {
        debug_assert!(
            match &self.places {
                Some(places) => !places.contains_key(&conn.id()),
                None => !self.list.iter().any(|c| c.id() == conn.id()),
            },
            "a connection indexed twice under one key"
        );
        if let Some(places) = &mut self.places {
            places.insert(conn.id(), self.list.len());
        }
        self.list.push(conn.clone());
        if self.places.is_none() && self.list.len() > PLACES_FROM {
            self.places = Some(
                self.list
                    .iter()
                    .enumerate()
                    .map(|(at, c)| (c.id(), at))
                    .collect(),
            );
        }
    }

    /// Takes connection `id` out; `false` when it was not there.
    fn remove(&mut self, id: u64) -> bool {
        let at = match &mut self.places {
            Some(places) => places.remove(&id),
            None => self.list.iter().position(|c| c.id() == id),
        };
        let Some(at) = at else {
            return false;
        };
        self.list.swap_remove(at);
        if let (Some(places), Some(moved)) = (&mut self.places, self.list.get(at)) {
            places.insert(moved.id(), at);
        }
        if self.list.len() <= PLACES_FROM / 2 {
            self.places = None;
        } else if let Some(places) = &mut self.places {
            shrink_map(places);
        }
        // A crowd of one identity's connections (or of one group's members) that left.
        if too_roomy(self.list.len(), self.list.capacity()) {
            self.list.shrink_to(self.list.len() * 2);
        }
        true
    }
}

/// Drops a connection from one index entry, and the entry itself once it is empty; `true`
/// when the entry went away.
fn unindex<K, Q>(index: &mut HashMap<K, Members>, key: &Q, conn_id: u64) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let Some(members) = index.get_mut(key) else {
        return false;
    };
    members.remove(conn_id);
    if members.len() > 0 {
        return false;
    }
    index.remove(key);
    shrink_map(index);
    true
}

/// Adds a connection to one index entry; `true` when the entry is new.
fn index<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, Members>,
    key: K,
    conn: &Arc<Connection>,
) -> bool {
    let members = index.entry(key).or_default();
    members.push(conn);
    members.len() == 1
}

impl Hub {
    /// A hub that tells `interest` what this server holds.
    pub fn new(interest: Option<Arc<dyn Interest>>) -> Self {
        Hub {
            interest,
            ..Hub::default()
        }
    }

    /// The same hub with these bounds on names and groups per connection.
    pub fn with_rules(mut self, rules: NameRules) -> Self {
        self.rules = rules;
        self
    }

    /// The bounds on names every application join and emit checks.
    pub fn rules(&self) -> &NameRules {
        &self.rules
    }

    /// An application's join (`Caller::join`): `group` is checked against the name rules and
    /// the connection's cap on groups first. `Ok(false)` when it was a member already.
    pub fn join_checked(&self, conn: &Arc<Connection>, group: &str) -> Result<bool, Refused> {
        self.rules.group(group)?;
        self.add_to(conn, group, self.rules.max_groups)
    }

    fn tell(&self, topic: Stream<'_>, held: bool) {
        if let Some(interest) = &self.interest {
            interest.changed(topic, held);
        }
    }

    pub fn add(&self, conn: &Arc<Connection>) {
        write(&self.conns).insert(conn.id(), conn.clone());
    }

    /// Indexes a connection under the identity it was just given; `true` when it is the
    /// identity's first connection here.
    pub fn identify(&self, conn: &Arc<Connection>, identity: &Identity) -> bool {
        let mut users = write(&self.users);
        let first = index(&mut users, identity.clone(), conn);
        if first {
            self.tell(Stream::User(identity), true);
        }
        first
    }

    /// Sets what follows up joins (once).
    pub fn on_join(&self, joined: Arc<dyn Joined>) {
        let _ = self.joined.set(joined);
    }

    /// Adds `conn` to the runtime's own `group` (presence watchers; not checked, not counted
    /// against the cap on application groups); `false` when it was already a member.
    pub fn join(&self, conn: &Arc<Connection>, group: &str) -> bool {
        self.add_to(conn, group, usize::MAX).unwrap_or(false)
    }

    fn add_to(&self, conn: &Arc<Connection>, group: &str, max: usize) -> Result<bool, Refused> {
        // The runtime's own groups (`__ephaptic.*`: presence watchers) carry no stream.
        let follow = self
            .joined
            .get()
            .filter(|j| conn.speaks_sessions() && !group.starts_with(RESERVED) && j.active());
        let joined = conn.add_group(group, max, |name| {
            if follow.is_some() {
                // Before it is indexed: no live event of the group reaches it ahead of its
                // position.
                conn.with_gate(|g| g.hold(&super::stream::group_stream(group)));
            }
            // Told under the lock, so that what is told comes in the order the index changed.
            let mut groups = write(&self.groups);
            if index(&mut groups, name, conn) {
                self.tell(Stream::Group(group), true);
            }
        });
        if joined == Ok(true)
            && let Some(follow) = follow
        {
            follow.joined(conn, group);
        }
        joined
    }

    /// What to await for events about `topic` from other servers to reach this one.
    pub fn ready(&self, topic: Stream<'_>) -> Option<Ready> {
        self.interest.as_ref()?.ready(topic)
    }

    /// Removes `conn` from `group` on purpose; `false` when it was not a member.
    pub fn leave(&self, conn: &Arc<Connection>, group: &str) -> bool {
        let left = self.unjoin(conn, group);
        // The runtime's own groups (presence watchers) carry no stream, hence no tenure.
        if left
            && !group.starts_with(RESERVED)
            && let Some(follow) = self.joined.get()
        {
            follow.left(conn, group);
        }
        left
    }

    /// Takes `conn` out of `group`'s index (a leave, or its close).
    fn unjoin(&self, conn: &Arc<Connection>, group: &str) -> bool {
        conn.remove_group(group, || {
            let mut groups = write(&self.groups);
            if unindex(&mut groups, group, conn.id()) {
                self.tell(Stream::Group(group), false);
            }
        })
    }

    /// Forgets a connection that closed: its id, its identity and its groups.
    pub fn remove(&self, conn: &Arc<Connection>) {
        {
            let mut conns = write(&self.conns);
            conns.remove(&conn.id());
            shrink_map(&mut conns);
        }
        if let Some(identity) = conn.identity() {
            let mut users = write(&self.users);
            if unindex(&mut users, identity, conn.id()) {
                self.tell(Stream::User(identity), false);
            }
        }
        for group in conn.groups() {
            self.unjoin(conn, &group);
        }
    }

    /// Whether connection `id` is open (still indexed).
    pub fn is_open(&self, id: u64) -> bool {
        read(&self.conns).contains_key(&id)
    }

    /// The connections open now.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        read(&self.conns).values().cloned().collect()
    }

    /// The identity keys of `group`'s members here, each once (anonymous members have none).
    pub fn member_keys(&self, group: &str) -> Vec<String> {
        let groups = read(&self.groups);
        let mut keys: Vec<String> = groups
            .get(group)
            .map(Members::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.identity().map(Identity::key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The identities connected here, each once, in no particular order.
    pub fn identity_list(&self) -> Vec<Identity> {
        read(&self.users).keys().cloned().collect()
    }

    /// The connections of `identity` open here.
    pub fn connections_of(&self, identity: &Identity) -> Vec<Arc<Connection>> {
        read(&self.users)
            .get(identity)
            .map(|m| m.as_slice().to_vec())
            .unwrap_or_default()
    }

    /// How many connections are open, and the `limit` oldest of them (the lowest ids), in
    /// order: what the inspector lists. Only ids are collected under the lock, then those
    /// connections.
    pub fn oldest_connections(&self, limit: usize) -> (usize, Vec<Arc<Connection>>) {
        let conns = read(&self.conns);
        let mut ids: Vec<u64> = conns.keys().copied().collect();
        let shown = first_sorted(&mut ids, limit, |a, b| a.cmp(b));
        let list = shown
            .iter()
            .filter_map(|id| conns.get(id).cloned())
            .collect();
        (conns.len(), list)
    }

    /// How many identities are connected, and the `limit` with the most connections (then by
    /// key), each with its count.
    pub fn busiest_identities(&self, limit: usize) -> (usize, Vec<(Identity, usize)>) {
        let users = read(&self.users);
        let mut all: Vec<(&Identity, usize)> = users.iter().map(|(k, m)| (k, m.len())).collect();
        let shown = first_sorted(&mut all, limit, |a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let list = shown.iter().map(|(k, n)| ((*k).clone(), *n)).collect();
        (users.len(), list)
    }

    /// How many of the application's groups have members here (the runtime's own, presence
    /// watchers, left out), and the `limit` largest of them (then by name), with their sizes.
    pub fn largest_groups(&self, limit: usize) -> (usize, Vec<(Arc<str>, usize)>) {
        let groups = read(&self.groups);
        let mut all: Vec<(&Arc<str>, usize)> = groups
            .iter()
            .filter(|(k, _)| !k.starts_with(RESERVED))
            .map(|(k, m)| (k, m.len()))
            .collect();
        let total = all.len();
        let shown = first_sorted(&mut all, limit, |a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let list = shown.iter().map(|(k, n)| (Arc::clone(k), *n)).collect();
        (total, list)
    }

    /// Asks every connection of `stream` here to close with `code` and `reason`; returns how
    /// many. (Collected first: a close takes no lock of the hub's, but a connection's end does.)
    pub fn close(&self, stream: Stream<'_>, code: u16, reason: &str) -> usize {
        let conns: Vec<Arc<Connection>> = match stream {
            Stream::All => read(&self.conns).values().cloned().collect(),
            Stream::User(id) => read(&self.users)
                .get(id)
                .map(|m| m.as_slice().to_vec())
                .unwrap_or_default(),
            Stream::Group(name) => read(&self.groups)
                .get(name)
                .map(|m| m.as_slice().to_vec())
                .unwrap_or_default(),
        };
        for conn in &conns {
            conn.close(code, reason);
        }
        conns.len()
    }

    /// How many connections of `identity` are open here.
    pub fn identity_len(&self, identity: &Identity) -> usize {
        read(&self.users).get(identity).map_or(0, Members::len)
    }

    /// How many connections are in `group`.
    #[cfg(any(feature = "redis", test))]
    pub fn members(&self, group: &str) -> usize {
        read(&self.groups).get(group).map_or(0, Members::len)
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        read(&self.conns).len()
    }

    /// How many distinct identities are connected.
    pub fn identities(&self) -> usize {
        read(&self.users).len()
    }

    /// The entries and capacities of the three indexes: connections, identities, groups.
    #[cfg(test)]
    fn sizes(&self) -> [(usize, usize); 3] {
        let conns = read(&self.conns);
        let users = read(&self.users);
        let groups = read(&self.groups);
        [
            (conns.len(), conns.capacity()),
            (users.len(), users.capacity()),
            (groups.len(), groups.capacity()),
        ]
    }

    /// The longest outbound queue of any connection, in frames.
    pub fn max_queued(&self) -> usize {
        read(&self.conns)
            .values()
            .map(|c| c.queued())
            .max()
            .unwrap_or(0)
    }

    /// How many connections listen to `stream` here.
    #[cfg(feature = "redis")]
    pub fn listeners(&self, stream: Stream<'_>) -> usize {
        match stream {
            Stream::All => self.len(),
            Stream::User(id) => self.identity_len(id),
            Stream::Group(name) => self.members(name),
        }
    }

    /// Offers `frame` to the listeners of `stream` here (`stamp`: its place in the stream, if
    /// it has one); returns how many queued it. The one switch from who gets an event to the
    /// connections that do.
    pub fn offer(&self, stream: Stream<'_>, frame: &Bytes, stamp: Option<Stamp<'_>>) -> usize {
        match stream {
            Stream::All => self.offer_all(frame, stamp),
            Stream::User(id) => self.offer_users_at(std::slice::from_ref(id), frame, stamp),
            Stream::Group(name) => self.offer_group(name, frame, stamp),
        }
    }

    /// Offers `frame` to every connection; returns how many queued it. `stamp`: its place in
    /// the broadcast stream, if it has one.
    pub fn offer_all(&self, frame: &Bytes, stamp: Option<Stamp<'_>>) -> usize {
        let conns = read(&self.conns);
        let weight = weigh(frame.len(), conns.len());
        conns
            .values()
            .filter(|c| offer(c, frame, stamp, weight))
            .count()
    }

    /// Offers `frame` to every connection of each identity, once per connection.
    #[cfg(any(feature = "redis", test))]
    pub fn offer_users(&self, identities: &[Identity], frame: &Bytes) -> usize {
        self.offer_users_at(identities, frame, None)
    }

    /// [`offer_users`](Self::offer_users), with the frame's place in the identities' stream
    /// (one identity, then).
    pub fn offer_users_at(
        &self,
        identities: &[Identity],
        frame: &Bytes,
        stamp: Option<Stamp<'_>>,
    ) -> usize {
        let users = read(&self.users);
        let of = |id: &Identity| users.get(id).map(Members::as_slice).unwrap_or_default();
        if let [identity] = identities {
            let conns = of(identity);
            let weight = weigh(frame.len(), conns.len());
            return conns
                .iter()
                .filter(|c| offer(c, frame, stamp, weight))
                .count();
        }
        // Listing one identity twice must not deliver twice, nor count as two holders.
        let mut seen = std::collections::HashSet::new();
        let conns: Vec<&Arc<Connection>> = identities
            .iter()
            .flat_map(|id| of(id).iter())
            .filter(|c| seen.insert(c.id()))
            .collect();
        let weight = weigh(frame.len(), conns.len());
        conns
            .iter()
            .filter(|c| offer(c, frame, stamp, weight))
            .count()
    }

    /// Offers `frame` to every connection in `group`.
    pub fn offer_group(&self, group: &str, frame: &Bytes, stamp: Option<Stamp<'_>>) -> usize {
        read(&self.groups)
            .get(group)
            .map(|members| {
                let weight = weigh(frame.len(), members.len());
                members
                    .as_slice()
                    .iter()
                    .filter(|c| offer(c, frame, stamp, weight))
                    .count()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::outbound::{self, Policy, Receiver, SlowClient};

    fn conn(id: u64) -> (Arc<Connection>, Receiver) {
        let (out, rx) = outbound::channel(Arc::new(Policy::new(8, SlowClient::Disconnect)));
        (Connection::new(id, None, None, out), rx)
    }

    fn drain(rx: &mut Receiver) -> usize {
        std::iter::from_fn(|| rx.try_recv()).count()
    }

    #[test]
    fn join_and_leave_keep_the_index_and_the_connection_in_step() {
        let hub = Hub::default();
        let (a, mut ra) = conn(1);
        let (b, mut rb) = conn(2);
        hub.add(&a);
        hub.add(&b);
        assert!(hub.join(&a, "room"));
        assert!(!hub.join(&a, "room"), "joining twice is one membership");
        assert!(hub.join(&b, "room"));
        assert_eq!(hub.members("room"), 2);
        assert_eq!(hub.offer_group("room", &Bytes::from_static(b"x"), None), 2);
        assert!(hub.leave(&a, "room"));
        assert!(!hub.leave(&a, "room"));
        assert_eq!(a.groups(), Vec::<Arc<str>>::new());
        assert_eq!(hub.offer_group("room", &Bytes::from_static(b"y"), None), 1);
        assert_eq!((drain(&mut ra), drain(&mut rb)), (1, 2));
        assert!(hub.leave(&b, "room"));
        assert_eq!(hub.members("room"), 0);
        assert_eq!(hub.offer_group("room", &Bytes::from_static(b"z"), None), 0);
    }

    #[test]
    fn identities_reach_every_connection_once_and_only_until_removal() {
        let hub = Hub::default();
        let alice = Identity::from("alice");
        let (a1, mut r1) = conn(1);
        let (a2, mut r2) = conn(2);
        let (other, mut r3) = conn(3);
        for c in [&a1, &a2, &other] {
            hub.add(c);
        }
        assert!(hub.identify(&a1, a1.set_identity(alice.clone()).unwrap()));
        assert!(!hub.identify(&a2, a2.set_identity(alice.clone()).unwrap()));
        assert_eq!(hub.identities(), 1);
        let twice = [alice.clone(), alice.clone()];
        assert_eq!(hub.offer_users(&twice, &Bytes::from_static(b"x")), 2);
        assert_eq!(hub.offer_users(&[Identity::from(7)], &Bytes::new()), 0);
        hub.remove(&a1);
        assert_eq!(hub.len(), 2);
        assert_eq!(
            hub.offer_users(std::slice::from_ref(&alice), &Bytes::from_static(b"y")),
            1
        );
        assert_eq!(hub.offer_all(&Bytes::from_static(b"z"), None), 2);
        assert_eq!((drain(&mut r1), drain(&mut r2), drain(&mut r3)), (1, 3, 1));
        hub.remove(&a2);
        assert_eq!(hub.identities(), 0);
    }

    #[derive(Debug, Default)]
    struct Log(std::sync::Mutex<Vec<String>>);

    impl Interest for Log {
        fn changed(&self, topic: Stream<'_>, held: bool) {
            let what = match topic {
                Stream::User(id) => id.key(),
                other => other.key(),
            };
            self.0
                .lock()
                .unwrap()
                .push(format!("{}{what}", if held { "+" } else { "-" }));
        }
    }

    #[test]
    fn interest_follows_the_first_and_the_last_connection_of_each_topic() {
        let log = Arc::new(Log::default());
        let hub = Hub::new(Some(log.clone()));
        let (a, _ra) = conn(1);
        let (b, _rb) = conn(2);
        for c in [&a, &b] {
            hub.add(c);
            hub.identify(c, c.set_identity(Identity::from("alice")).unwrap());
            hub.join(c, "room");
        }
        hub.leave(&a, "room");
        hub.remove(&a);
        hub.remove(&b);
        let got = log.0.lock().unwrap().clone();
        assert_eq!(got, ["+s:alice", "+g:room", "-s:alice", "-g:room"]);
    }

    #[test]
    fn bad_frames_are_logged_a_few_times_then_only_counted() {
        let (c, _rx) = conn(1);
        let logged: Vec<bool> = (0..5).map(|_| c.note_bad_frame()).collect();
        assert_eq!(logged, [true, true, true, false, false]);
        assert_eq!(c.bad_frames(), 5);
    }

    #[test]
    fn removal_takes_a_connection_out_of_all_its_groups() {
        let hub = Hub::default();
        let (a, _ra) = conn(1);
        hub.add(&a);
        hub.join(&a, "one");
        hub.join(&a, "two");
        hub.remove(&a);
        assert_eq!(
            (hub.members("one"), hub.members("two"), hub.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_crowd_leaving_in_any_order_leaves_exactly_the_others() {
        let hub = Hub::default();
        let mut crowd: Vec<_> = (0..1_000u64)
            .map(|i| {
                let (c, rx) = conn(i);
                hub.add(&c);
                hub.join(&c, "lobby");
                (c, rx)
            })
            .collect();
        // Every third leaves, in a scrambled order (the moved members' places must follow).
        let mut leaving: Vec<u64> = (0..1_000).filter(|i| i % 3 == 0).collect();
        leaving.sort_by_key(|i| (i * 7919) % 1_009);
        for id in &leaving {
            let (c, _) = &crowd[*id as usize];
            assert!(hub.leave(c, "lobby"));
            assert!(!hub.leave(c, "lobby"), "left twice");
        }
        assert_eq!(hub.members("lobby"), 1_000 - leaving.len());
        hub.offer_group("lobby", &Bytes::from_static(b"x"), None);
        for (i, (_, rx)) in crowd.iter_mut().enumerate() {
            let want = usize::from(i % 3 != 0);
            assert_eq!(drain(rx), want, "connection {i}");
        }
        // Down to a few: the places are dropped and the walk takes over, still exact.
        for (c, _) in crowd.iter().filter(|(c, _)| c.id() % 3 != 0 && c.id() > 20) {
            hub.leave(c, "lobby");
        }
        assert!(read(&hub.groups)["lobby"].places.is_none());
        hub.offer_group("lobby", &Bytes::from_static(b"y"), None);
        let reached: Vec<u64> = crowd
            .iter_mut()
            .filter_map(|(c, rx)| (drain(rx) == 1).then(|| c.id()))
            .collect();
        assert_eq!(reached, (1..=20).filter(|i| i % 3 != 0).collect::<Vec<_>>());
    }

    #[test]
    fn indexes_shrink_when_identities_and_groups_leave() {
        let hub = Hub::default();
        let n = 10_000u64;
        let crowd: Vec<_> = (0..n)
            .map(|i| {
                let (c, rx) = conn(i);
                hub.add(&c);
                let id = c.set_identity(Identity::from(format!("user-{i}"))).unwrap();
                hub.identify(&c, id);
                hub.join(&c, &format!("room-{i}"));
                hub.join(&c, "lobby");
                (c, rx)
            })
            .collect();
        let peak = hub.sizes();
        assert_eq!(peak.map(|(len, _)| len), [10_000, 10_000, 10_001]);
        let (stay, _rx) = conn(n);
        hub.add(&stay);
        hub.identify(&stay, stay.set_identity(Identity::from("stays")).unwrap());
        hub.join(&stay, "lobby");
        for (c, _) in &crowd {
            hub.remove(c);
        }
        let after = hub.sizes();
        assert_eq!(
            after.map(|(len, _)| len),
            [1, 1, 1],
            "only what `stay` holds"
        );
        for (i, ((_, cap), (_, peak_cap))) in after.iter().zip(peak).enumerate() {
            assert!(
                *cap <= SHRINK_FLOOR,
                "index {i}: capacity {cap} after the crowd left (peak {peak_cap})"
            );
        }
        let lobby = read(&hub.groups)["lobby"].list.capacity();
        assert!(lobby <= SHRINK_FLOOR, "the lobby's list kept {lobby} slots");
        assert_eq!(hub.offer_group("lobby", &Bytes::from_static(b"x"), None), 1);
    }
}
