//! The caller's context: who made a call, on which connection, from where.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use super::event::{Event, encode};
use crate::handshake::Handshake;
use crate::identity::Identity;
use crate::runtime::Emit;
use crate::session::{Connection, Hub};

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
    /// Returns whether the connection was still open.
    /// Nothing is sent until the returned future is awaited.
    pub fn emit<E: Event>(&self, event: E) -> Emit<'_, bool> {
        let frame = encode(E::NAME, &event);
        Emit::new(async move {
            match frame {
                Some(frame) => self.conn.send(frame).await,
                None => false,
            }
        })
    }

    /// Adds this connection to a group (a room), so `ephaptic::group(name).emit(..)` and
    /// channels with `Audience::group(name)` reach it. Membership ends when the connection
    /// closes. Authorise before joining: a group is only as private as the code that joins it.
    /// Returns `false` when it was already a member.
    pub fn join(&self, group: &str) -> bool {
        self.hub.join(&self.conn, group)
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
        if let Some(ready) = self.hub.ready(crate::session::Topic::Group(group)) {
            ready.await;
        }
        joined
    }

    /// Removes this connection from a group; `false` when it was not a member.
    pub fn leave(&self, group: &str) -> bool {
        self.hub.leave(&self.conn, group)
    }

    /// The groups this connection has joined.
    pub fn groups(&self) -> Vec<String> {
        self.conn.groups().iter().map(|g| g.to_string()).collect()
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
