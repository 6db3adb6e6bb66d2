//! A connection's life on the runtime side, whatever carries its bytes: opened (an id, a
//! queue, a place in the hub), settled (its first frame: the identity loader on `init.auth`,
//! or on no `auth` when the first frame is something else; then `on_connect`), and ended (out of the hub, its calls stopped, then
//! `on_disconnect`). The rule "only the first frame may be `init`" lives here and nowhere
//! else; the transport only moves frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::ending;
use super::expiry;
use super::inbound::{self, Init};
use super::panic::CatchUnwind;
use super::scope::in_scope;
use super::state::{Hook, State};
use super::trace::Way;
use crate::handler::Caller;
use crate::handshake::Handshake;
use crate::session::{
    ALL_WIRE, CloseSignal, Connection, Outbox, Receiver, Stream, USER_WIRE, outbound,
};

use crate::identity::MAX_IDENTITY;

/// Close code "policy violation" (RFC 6455).
const CLOSE_POLICY: u16 = 1008;

/// A connection task that has not finished yet; see [`Session::live`].
#[derive(Debug)]
pub(crate) struct LiveTask(Arc<State>);

impl Drop for LiveTask {
    fn drop(&mut self) {
        self.0.live_tasks.fetch_sub(1, Relaxed);
    }
}

/// One connection of one server, as its task drives it.
#[derive(Debug)]
pub(crate) struct Session {
    state: Arc<State>,
    conn: Arc<Connection>,
    /// Whether its identity is settled: a first frame was read (and the identity loader, if
    /// there is one, ran).
    settled: bool,
    /// The upgrade request, for the identity loader; dropped once it has run.
    handshake: Option<Handshake>,
}

impl Session {
    /// Opens a connection of `state`'s server: the session, and the receiving side of its
    /// outbound queue for the task that writes to the client. `handshake` is the upgrade
    /// request, when [`State::wants_handshake`] (`None` from transports without one).
    pub fn open(
        state: &Arc<State>,
        peer: Option<SocketAddr>,
        handshake: Option<Handshake>,
    ) -> (Session, Receiver) {
        state.delivery.opened();
        let (out, rx) = outbound::channel(state.outbound.clone());
        let kept = handshake.clone().filter(|_| state.config.keep_handshake);
        let conn = Connection::new(state.next_connection_id(), peer, kept, out);
        state.hub.add(&conn);
        if state.draining() {
            // Upgraded while the server stops accepting: told to go elsewhere at once.
            conn.close(super::drain::CLOSE_GOING_AWAY, "server shutting down");
        }
        tracing::debug!(connection = conn.id(), ?peer, "connected");
        let session = Session {
            state: state.clone(),
            conn,
            settled: false,
            handshake: handshake.filter(|_| state.loader.is_some()),
        };
        (session, rx)
    }

    /// Counts the connection's task as live until the returned guard drops (after its last
    /// frame is written), so a shutdown can wait for every task to finish.
    pub fn live(&self) -> LiveTask {
        self.state.live_tasks.fetch_add(1, Relaxed);
        LiveTask(self.state.clone())
    }

    pub fn id(&self) -> u64 {
        self.conn.id()
    }

    /// The signal a close request (slow client, shutdown, a message too big) sets.
    pub fn close_signal(&self) -> Arc<CloseSignal> {
        self.conn.close_signal()
    }

    /// Whether the inspector traces this connection's frames (`trace.rs`): one relaxed load,
    /// all that a connection nobody traces pays. Its task asks once per message read and once
    /// per batch of writes, then hands each frame to [`trace_in`](Self::trace_in) or
    /// [`trace_out`](Self::trace_out).
    #[inline]
    pub fn traced(&self) -> bool {
        self.conn.traced()
    }

    /// Logs a frame read from a traced connection.
    #[cold]
    pub fn trace_in(&self, frame: &[u8]) {
        self.state.tracer.record(&self.conn, Way::In, frame);
    }

    /// Logs a frame written to a traced connection.
    #[cold]
    pub fn trace_out(&self, frame: &[u8]) {
        self.state.tracer.record(&self.conn, Way::Out, frame);
    }

    /// Asks for the connection to be closed with this code and reason.
    pub fn close(&self, code: u16, reason: &str) {
        self.conn.close(code, reason);
    }

    /// The frames of one read of the socket are about to be handled, on this thread and
    /// without yielding: with metrics on, their calls share one clock (`telemetry::Lap`) until
    /// the guard is dropped.
    #[inline]
    pub fn reading(&self) -> Option<super::telemetry::Lap> {
        self.state
            .telemetry
            .is_some()
            .then(super::telemetry::Lap::begin)
    }

    /// Handles one binary frame; answers that are ready go into `out`. `Some` when the frame
    /// was the first and the identity loader must run: [`authenticate`](Self::authenticate)
    /// runs it (and handles the frame, if it was not `init`) before the next frame is read.
    #[inline]
    pub fn on_binary(&mut self, frame: Bytes, out: &mut Outbox) -> Option<Init> {
        let first = !self.settled;
        let init = inbound::on_frame(&self.state, &self.conn, frame, first, out);
        if first && init.is_none() {
            self.settle();
        }
        init
    }

    /// A text frame: not ephaptic's, skipped (it still settles a fresh connection: `Some`
    /// when the identity loader must run first, as for [`on_binary`](Self::on_binary)).
    pub fn on_text(&mut self) -> Option<Init> {
        if self.conn.note_bad_frame() {
            tracing::warn!(
                connection = self.conn.id(),
                "skipping a text frame; ephaptic frames are binary MessagePack"
            );
        }
        if self.settled {
            return None;
        }
        if self.state.loader.is_some() {
            return Some(Init::NoInit(None));
        }
        self.settle();
        None
    }

    /// Runs the identity loader on `init.auth`, or on no `auth` when the first frame was not
    /// `init` (its failure leaves the connection anonymous), with the upgrade request; settles
    /// the connection; then handles the first frame if it was not `init` (its answers go into
    /// `out`).
    pub async fn authenticate(&mut self, init: Init, out: &mut Outbox) {
        let (auth, then, session) = match init {
            Init::Auth {
                auth,
                session,
                refresh,
            } => {
                if refresh {
                    self.conn.start_refreshing();
                }
                (auth, None, session)
            }
            Init::NoInit(frame) => (None, frame, None),
        };
        // A client that resumes gets the live events of its streams only after their replay
        // (the hello's): held back from before it is indexed for them.
        let resuming = |stream: &str| {
            session
                .as_ref()
                .is_some_and(|asked| asked.iter().any(|(s, _)| s == stream))
                && self.state.delivery.keeps_history()
        };
        let hold_user = resuming(USER_WIRE);
        if resuming(ALL_WIRE) {
            self.conn.with_gate(|g| g.hold(ALL_WIRE));
        }
        if let Some(asked) = session {
            self.conn.start_session(asked);
        }
        if let Some(loader) = self.state.loader.clone() {
            let handshake = self.handshake.take().unwrap_or_else(Handshake::empty);
            let result = CatchUnwind::other(loader(auth, handshake.clone())).await;
            let id = self.conn.id();
            match result {
                Ok(Ok(Some(grant))) if grant.identity.too_long() => tracing::warn!(
                    connection = id,
                    "the identity loader returned an identity of more than {MAX_IDENTITY} bytes; \
                     the connection is anonymous"
                ),
                Ok(Ok(Some(grant))) if !expiry::fresh(&grant) => tracing::warn!(
                    connection = id,
                    "the identity loader returned an identity that had expired already; \
                     the connection is anonymous"
                ),
                Ok(Ok(Some(grant))) => {
                    if let Some(at) = grant.expires {
                        expiry::arm(&self.conn, at, handshake);
                    }
                    ending::revalidate(&self.state);
                    if let Some(identity) = self.conn.set_identity(grant.identity) {
                        if hold_user {
                            self.conn.with_gate(|g| g.hold(USER_WIRE));
                        }
                        self.state.hub.identify(&self.conn, identity);
                        self.state.tracer.identified(&self.conn, identity);
                        if let Some(cap) = self.state.config.max_connections_per_identity
                            && self.state.hub.identity_len(identity) > cap
                        {
                            self.state.refusals.identity.fetch_add(1, Relaxed);
                            tracing::debug!(
                                connection = id,
                                "closing a connection beyond the identity's cap of {cap}"
                            );
                            self.conn
                                .close(CLOSE_POLICY, "too many connections for this identity");
                            // Refused: not settled (no hooks), and its first frame is not run.
                            // The close is the next thing its task sees.
                            return;
                        }
                        // Events for this identity from other servers must reach it before its
                        // client hears that it is connected (its next frame is read).
                        // (The hub's interest is the backplane's: `Hub::ready` asks it.)
                        if let Some(ready) = self.state.hub.ready(Stream::User(identity)) {
                            ready.await;
                        }
                        if self.conn.close_signal().is_set() {
                            // Its session was ended meanwhile (`disconnect` of its identity):
                            // not settled, and its first frame is not run.
                            return;
                        }
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(
                    connection = id,
                    "the identity loader failed; the connection is anonymous: {e}"
                ),
                Err(_) => tracing::error!(
                    connection = id,
                    "the identity loader panicked; the connection is anonymous"
                ),
            }
        }
        self.settle();
        if let Some(frame) = then {
            let init = self.on_binary(frame, out);
            debug_assert!(init.is_none(), "a settled connection has no first frame");
        }
    }

    fn settle(&mut self) {
        self.settled = true;
        self.hook(self.state.on_connect.as_ref());
    }

    /// Ends the connection: out of the hub (so events no longer reach it), every call and
    /// stream stopped, then `on_disconnect` if `on_connect` ran.
    pub fn end(self) {
        let bad = self.conn.bad_frames();
        if bad > crate::session::connection::BAD_FRAMES_LOGGED {
            tracing::warn!(
                connection = self.conn.id(),
                "the connection sent {bad} unusable frames (the first {} were logged)",
                crate::session::connection::BAD_FRAMES_LOGGED
            );
        }
        self.conn.mark_ended();
        self.state.hub.remove(&self.conn);
        self.state.presence.closed(&self.state, &self.conn);
        self.conn.abort_all();
        if self.settled {
            self.hook(self.state.on_disconnect.as_ref());
        }
        tracing::debug!(connection = self.conn.id(), "disconnected");
    }

    /// Runs a connection hook in a task of its own, with the connection's server current (so
    /// `ephaptic::emit` inside it reaches that server).
    fn hook(&self, hook: Option<&Hook>) {
        if let Some(hook) = hook {
            let run = hook(Caller::new(self.conn.clone(), self.state.hub.clone()));
            tokio::spawn(in_scope(self.state.clone(), run));
        }
    }
}
