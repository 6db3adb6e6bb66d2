//! The public handles ([`Caller::presence`], [`presence`]) and the reserved calls
//! (`__ephaptic.presence.*`) that `dispatch.rs` hands over: each finds the running server and
//! asks its [`Tracker`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::tracker::{forbidden, listing_into, lock, value_of};
use super::types::{
    CALLS, MAX_GROUP, MAX_WATCHES, PresenceCount, PresenceList, WATCHERS, watchers,
};
use crate::error::Error;
use crate::handler::{BoxFuture, Caller};
use crate::runtime::scope::current;
use crate::runtime::state::State;
use crate::session::{Connection, Stream};
use crate::wire::RawFrame;

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
            if let Some(ready) = state.hub.ready(Stream::Group(&name)) {
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
