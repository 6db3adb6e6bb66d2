//! Credentials that expire (docs/PROTOCOL.md 5.11). An identity loader that returns an
//! [`Expiring`](crate::Expiring) identity arms a timer on the connection: before the expiry a
//! client that said `init.refresh: true` is sent a `refresh` frame and answers with the
//! reserved call `__ephaptic.refresh` carrying fresh credentials; the loader runs on them
//! (with the same upgrade request) and the connection goes on when they name the same
//! identity. Without an answer by the expiry, the session ends: close code 4401 for a client
//! that refreshes, an ordinary close (1000) for one that does not (it reconnects, and its
//! loader runs again, as it always has). Calls after the expiry are refused `UNAUTHORIZED`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::panic::CatchUnwind;
use super::state::State;
use crate::error::Error;
use crate::handler::Grant;
use crate::handshake::Handshake;
use crate::session::Connection;
use crate::session::credentials::{SESSION_ENDED, unix_ms, until_ms};
use crate::wire::reply;

/// The reserved name of the refresh call.
pub(crate) const REFRESH: &[u8] = b"__ephaptic.refresh";

/// The most time before an expiry that a client is asked to refresh (half the grant's life
/// when that is shorter).
const MAX_LEAD: Duration = Duration::from_secs(30);

/// Close code "normal closure": the expiry of a client that cannot refresh, which reconnects.
const CLOSE_NORMAL: u16 = 1000;

/// The close reason of a grant that ran out.
const EXPIRED: &str = "credentials expired";

/// Whether a grant the identity loader returned still holds (one that expired already leaves a
/// new connection anonymous).
pub(crate) fn fresh(grant: &Grant) -> bool {
    grant.expires.is_none_or(|at| at > SystemTime::now())
}

/// Arms (or re-arms) `conn`'s timer for a grant ending at `expires`: the refresh request
/// before it, the end of the session at it.
pub(crate) fn arm(conn: &Arc<Connection>, expires: SystemTime, handshake: Handshake) {
    let at = unix_ms(expires);
    let ttl = until_ms(at);
    let lead = (ttl / 2).min(MAX_LEAD);
    let weak = Arc::downgrade(conn);
    let timer = tokio::spawn(async move {
        tokio::time::sleep(ttl - lead).await;
        match weak.upgrade() {
            Some(conn) if conn.refreshes() => {
                if let Some(frame) = refresh_frame(at) {
                    conn.send(frame).await;
                }
            }
            Some(_) => {}
            None => return,
        }
        tokio::time::sleep(until_ms(at)).await;
        if let Some(conn) = weak.upgrade() {
            let code = if conn.refreshes() {
                SESSION_ENDED
            } else {
                CLOSE_NORMAL
            };
            tracing::debug!(
                connection = conn.id(),
                "the connection's credentials expired"
            );
            conn.close(code, EXPIRED);
        }
    })
    .abort_handle();
    conn.credentials().renew(at, handshake, timer);
}

/// `{type: "refresh", expires: <Unix ms>}`.
fn refresh_frame(expires: u64) -> Option<Bytes> {
    #[derive(Serialize)]
    struct Refresh {
        r#type: &'static str,
        expires: u64,
    }
    let frame = Refresh {
        r#type: "refresh",
        expires,
    };
    rmp_serde::to_vec_named(&frame).ok().map(Bytes::from)
}

/// `UNAUTHORIZED` for a call on a connection whose credentials expired.
pub(crate) fn expired() -> Error {
    Error::new(
        "UNAUTHORIZED",
        "The connection's credentials expired: refresh them (the client's `auth` is asked again) or reconnect.",
    )
}

/// What the refresh call answers: the new expiry (Unix ms), nil when the identity no longer
/// expires.
#[derive(Serialize)]
struct Refreshed {
    expires: Option<u64>,
}

/// Runs `__ephaptic.refresh`: the loader on `auth` with the connection's upgrade request. The
/// same identity goes on (with the new expiry); another identity, none, or a loader that
/// fails ends the session with 4401.
pub(crate) async fn refresh(
    state: Arc<State>,
    conn: Arc<Connection>,
    id: Bytes,
    auth: Option<Bytes>,
) {
    let Some(loader) = state.loader.clone() else {
        let e = Error::new(
            "NOT_FOUND",
            "This server has no identity loader: there is nothing to refresh.",
        );
        conn.send(e.to_frame(&id, false)).await;
        return;
    };
    let handshake = conn
        .credentials()
        .handshake()
        .unwrap_or_else(Handshake::empty);
    let result = CatchUnwind::other(loader(auth, handshake.clone())).await;
    let why = match result {
        Ok(Ok(Some(grant))) if Some(&grant.identity) == conn.identity() => match grant.expires {
            Some(at) if at > SystemTime::now() => {
                let now = conn.credentials().expires_ms().unwrap_or(0);
                if unix_ms(at) > now {
                    arm(&conn, at, handshake);
                }
                // Not later than the grant it has: nothing moves (and it is not asked
                // again); the session ends at that grant's expiry.
                answer(&conn, &id, Some(unix_ms(at).max(now))).await;
                return;
            }
            Some(_) => EXPIRED,
            None => {
                conn.credentials().clear();
                answer(&conn, &id, None).await;
                return;
            }
        },
        Ok(Ok(Some(_))) => "credentials refreshed for another identity",
        Ok(Ok(None)) => "credentials refused",
        Ok(Err(e)) => {
            tracing::warn!(
                connection = conn.id(),
                "the identity loader failed on refreshed credentials; the session ends: {e}"
            );
            "credentials refused"
        }
        Err(_) => {
            tracing::error!(
                connection = conn.id(),
                "the identity loader panicked on refreshed credentials; the session ends"
            );
            "credentials refused"
        }
    };
    let e = Error::new("UNAUTHORIZED", format!("The session ended: {why}."));
    conn.send(e.to_frame(&id, false)).await;
    conn.close(SESSION_ENDED, why);
}

/// Lets the connection start another refresh once this one ended (or was cancelled).
/// Made before the refresh's task is spawned and moved into it, so that a refresh cancelled
/// before its first poll lets the next one start too.
pub(crate) struct RefreshDone(pub Arc<Connection>);

impl Drop for RefreshDone {
    fn drop(&mut self) {
        self.0.end_refresh();
    }
}

async fn answer(conn: &Connection, id: &[u8], expires: Option<u64>) {
    match reply::result_frame(id, &Refreshed { expires }) {
        Ok(frame) => {
            conn.send(frame).await;
        }
        Err(e) => tracing::error!("the refresh's answer could not be encoded: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_frame_is_a_typed_map_without_an_id() {
        let frame = refresh_frame(1_700_000_000_123).unwrap();
        let v = rmpv::decode::read_value(&mut &frame[..]).unwrap();
        let map = v.as_map().unwrap();
        assert_eq!(map[0].0.as_str(), Some("type"));
        assert_eq!(map[0].1.as_str(), Some("refresh"));
        assert_eq!(map[1].1.as_u64(), Some(1_700_000_000_123));
        assert_eq!(map.len(), 2, "no id: old clients ignore it");
    }

    /// The code of the error answering a call to `name` on a connection whose grant ended at
    /// `expires_ms` (0: it has none).
    async fn answer_to_a_call(expires_ms: u64, name: &str) -> String {
        use crate::runtime::{Config, State, inbound};
        let state = State::for_tests(Config::default());
        let (out, _rx) = crate::session::outbound::channel(state.outbound.clone());
        let conn = Connection::new(1, None, None, out);
        if expires_ms != 0 {
            let timer = tokio::spawn(async {}).abort_handle();
            conn.credentials()
                .renew(expires_ms, Handshake::empty(), timer);
        }
        let call = rmpv::Value::Map(vec![
            ("type".into(), "rpc".into()),
            ("id".into(), 1.into()),
            ("name".into(), name.into()),
            ("args".into(), rmpv::Value::Array(vec![])),
        ]);
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &call).unwrap();
        let mut answers = Vec::new();
        inbound::on_frame(&state, &conn, Bytes::from(frame), false, &mut answers);
        let reply = rmpv::decode::read_value(&mut &answers[0][..]).unwrap();
        let error = &reply.as_map().unwrap()[1].1;
        error.as_map().unwrap()[0].1.as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn calls_after_the_expiry_are_refused_unauthorized() {
        // Without a grant, the unknown function is what is wrong with the call.
        assert_eq!(answer_to_a_call(0, "nothing_here").await, "NOT_FOUND");
        let future = unix_ms(SystemTime::now() + Duration::from_secs(60));
        assert_eq!(answer_to_a_call(future, "nothing_here").await, "NOT_FOUND");
        // Past the expiry, no call runs under the old credentials.
        let past = unix_ms(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(answer_to_a_call(past, "nothing_here").await, "UNAUTHORIZED");
        assert_eq!(
            answer_to_a_call(past, "__ephaptic.presence.count").await,
            "UNAUTHORIZED"
        );
    }

    #[test]
    fn a_grant_in_the_past_is_not_fresh() {
        let id = crate::Identity::from("alice");
        assert!(fresh(&Grant::forever(id.clone())));
        let past = Grant {
            identity: id,
            expires: Some(SystemTime::now() - Duration::from_secs(1)),
        };
        assert!(!fresh(&past));
    }
}
