//! The caller's context: who made a call, on which connection, from where.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use super::emit::Emit;
use super::event::{Event, encode, too_large_to_send};
use crate::error::Error;
use crate::handshake::Handshake;
use crate::identity::Identity;
use crate::session::{Connection, Hub, Refused};

/// Who is calling. Add a parameter of this type to an exposed function to get it; it is filled
/// in by the server, never sent by the client, and may stand anywhere in the parameter list.
///
/// ```
/// use ephaptic::{Caller, Identity};
///
/// #[ephaptic::expose]
/// async fn whoami(caller: Caller) -> Option<Identity> {
///     caller.identity().cloned()
/// }
/// ```
#[derive(Clone)]
pub struct Caller {
    conn: Arc<Connection>,
    /// The index of the server the connection belongs to, for joining and leaving groups.
    hub: Arc<Hub>,
}

impl Caller {
    pub(crate) fn new(conn: Arc<Connection>, hub: Arc<Hub>) -> Self {
        Caller { conn, hub }
    }

    /// The connection this caller is (for the runtime's presence).
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// The identity the identity loader gave this connection; `None` when anonymous.
    pub fn identity(&self) -> Option<&Identity> {
        self.conn.identity()
    }

    /// When the connection's identity expires: the loader returned an
    /// [`Expiring`](crate::Expiring) identity (moved on by each refresh). `None`: it does not.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        let ms = self.conn.credentials().expires_ms()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    /// Whether the connection is authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.conn.identity().is_some()
    }

    /// A number unique to this connection for the life of the server.
    pub fn connection_id(&self) -> u64 {
        self.conn.id()
    }

    /// The peer's address, when the server knows it: always with [`serve`](crate::serve); with
    /// [`router`](crate::router) when the app is served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.peer()
    }

    /// The HTTP upgrade request that opened this connection (headers, cookies, path, peer),
    /// when the server keeps it: only with [`Server::keep_handshake`](crate::Server::keep_handshake),
    /// `None` otherwise. (The identity loader always gets it; reading a cookie there and
    /// keeping only the identity is cheaper than keeping every connection's request.)
    ///
    /// ```
    /// use ephaptic::Caller;
    ///
    /// #[ephaptic::expose]
    /// async fn user_agent(caller: Caller) -> Option<String> {
    ///     // Needs `Server::new().keep_handshake()`.
    ///     caller.handshake()?.header("user-agent").map(str::to_owned)
    /// }
    /// ```
    pub fn handshake(&self) -> Option<&Handshake> {
        self.conn.handshake()
    }

    /// Sends `event` to this connection only. It is queued in order with this connection's
    /// replies, so an event emitted before a handler returns arrives before its result.
    /// Returns whether the connection was still open (`false` too for an event larger than
    /// [`Server::max_sent_frame`](crate::Server::max_sent_frame), which is not sent).
    /// Nothing is sent until the returned future is awaited.
    pub fn emit<E: Event>(&self, event: E) -> Emit<'_, bool> {
        let frame = encode(E::NAME, &event);
        Emit::new(async move {
            match frame {
                Some(frame)
                    if too_large_to_send(E::NAME, frame.len(), 0, self.conn.max_sent_frame()) =>
                {
                    false
                }
                Some(frame) => self.conn.send(frame).await,
                None => false,
            }
        })
    }

    /// Adds this connection to a group (a room), so `ephaptic::group(name).emit(..)` and
    /// channels with `Audience::group(name)` reach it. Membership ends when the connection
    /// closes. Authorise before joining: a group is only as private as the code that joins it.
    /// Returns `false` when it was already a member, or when the join was refused (see
    /// [`try_join`](Self::try_join), which says why; a refusal is logged here).
    pub fn join(&self, group: &str) -> bool {
        self.try_join(group).unwrap_or_else(|e| {
            refused(self, group, &e);
            false
        })
    }

    /// [`join`](Self::join), or why not: a name starting with `__ephaptic.` (the server's
    /// own groups, such as a group's presence watchers), a name longer than
    /// [`Server::max_group_name_len`](crate::Server::max_group_name_len), or a connection
    /// already in [`Server::max_groups_per_connection`](crate::Server::max_groups_per_connection)
    /// groups. The error (`INVALID_NAME` or `TOO_MANY_GROUPS`) can be returned to the client
    /// as it is. `Ok(false)` when it was already a member.
    ///
    /// ```
    /// # use ephaptic::Caller;
    /// #[ephaptic::expose]
    /// async fn enter(caller: Caller, room: String) -> ephaptic::Result<bool> {
    ///     // A client-chosen name: too long a one is answered INVALID_NAME.
    ///     caller.try_join(&format!("room:{room}"))
    /// }
    /// ```
    pub fn try_join(&self, group: &str) -> Result<bool, Error> {
        self.hub.join_checked(&self.conn, group).map_err(|e| {
            let error = Error::new(e.code(), e.to_string());
            match e {
                Refused::TooMany { max } => error.with_data(&Limit { limit: max }),
                _ => error,
            }
        })
    }

    /// [`join`](Self::join), then waits until events sent to the group from other servers
    /// reach this one (with Redis, until this server's subscription to the group is confirmed;
    /// at most a few seconds, and not at all while Redis is away). With `join` alone, the
    /// subscription is made in the background, and an event another server sends to the group
    /// in the first milliseconds may miss this member. Without Redis it is `join`.
    ///
    /// ```
    /// # use ephaptic::Caller;
    /// #[ephaptic::expose]
    /// async fn enter(caller: Caller, room: String) -> bool {
    ///     // The reply is sent once the room's events from every server reach the caller.
    ///     caller.join_ready(&format!("room:{room}")).await
    /// }
    /// ```
    pub async fn join_ready(&self, group: &str) -> bool {
        let joined = self.join(group);
        if let Some(ready) = self.hub.ready(crate::session::Stream::Group(group)) {
            ready.await;
        }
        joined
    }

    /// Removes this connection from a group; `false` when it was not a member. A leave ends
    /// the identity's tenure in the group: when it joins again, it is not replayed what the
    /// group was sent in between (docs/PROTOCOL.md 5.6). The server's own groups
    /// (`__ephaptic.`) cannot be left from here.
    pub fn leave(&self, group: &str) -> bool {
        if self.hub.rules().group(group) == Err(Refused::Reserved) {
            return false;
        }
        self.hub.leave(&self.conn, group)
    }

    /// The groups this connection has joined.
    pub fn groups(&self) -> Vec<String> {
        self.conn.groups().iter().map(|g| g.to_string()).collect()
    }
}

/// The `data` of a `TOO_MANY_GROUPS` error.
#[derive(serde::Serialize)]
struct Limit {
    limit: usize,
}

/// Logs a join refused by [`Caller::join`] (at most a few lines a minute: names come from
/// clients).
fn refused(caller: &Caller, group: &str, e: &Error) {
    static LOGGED: crate::session::names::Every = crate::session::names::Every::new();
    if LOGGED.ready() {
        tracing::warn!(
            connection = caller.connection_id(),
            group = %crate::session::names::for_log(group),
            "a join was refused: {} (Caller::try_join returns this as an error)",
            e.message()
        );
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("connection_id", &self.connection_id())
            .field("identity", &self.identity())
            .field("peer_addr", &self.peer_addr())
            .finish()
    }
}
