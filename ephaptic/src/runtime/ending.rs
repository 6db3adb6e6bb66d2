//! Sessions the server ends: [`disconnect`] (logging a user out everywhere, revoking access)
//! closes the matching connections here and, through the backplane, on every other server,
//! with close code 4401 (docs/PROTOCOL.md 5.11); and the revalidation hook
//! ([`Server::revalidate`](crate::Server::revalidate)) that ends the sessions of identities
//! whose server-side session is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::scope::{current, in_scope};
use super::state::State;
use crate::handler::Audience;
use crate::session::Stream;
use crate::session::credentials::{SESSION_ENDED, close_reason};

/// What [`disconnect`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disconnected {
    /// How many connections of this server it closed.
    pub local: usize,
    /// Whether the request was handed to the backplane for every other server (queued for
    /// Redis). `false` without a backplane, and when Redis is away or its queue is full: the
    /// other servers' connections then stay open, so call it again or rely on the
    /// credentials' expiry.
    pub published: bool,
}

/// Ends the sessions of everyone in `audience` (the same audiences as [`to`](crate::to) and
/// [`group`](crate::group)), on every server: each of their connections is closed with close
/// code **4401** ("session ended": `@ephaptic/client` does not reconnect with the same
/// credentials and calls its `onSessionEnded` listeners) and `reason` (cut to the 123 bytes a
/// close frame carries). Old clients just see a close.
///
/// Use it to log a user out everywhere, or to revoke a token or a role; pair it with the
/// identity loader refusing the old credentials, or a reconnecting client would come back.
///
/// ```no_run
/// # async fn logout(user_id: u64) {
/// let ended = ephaptic::disconnect(ephaptic::to(user_id), "logged out");
/// tracing::info!(closed_here = ended.local, published = ended.published, "logged out everywhere");
/// # }
/// ```
///
/// Inside a handler this is the server that runs the handler; elsewhere, the server started
/// most recently in this process.
pub fn disconnect(audience: Audience, reason: &str) -> Disconnected {
    audience.disconnect(reason)
}

impl Audience {
    /// Ends the sessions of this audience on every server: see [`disconnect`].
    pub fn disconnect(&self, reason: &str) -> Disconnected {
        let Some(state) = current() else {
            tracing::warn!(
                "disconnect was called but no ephaptic server is running in this process"
            );
            return Disconnected::default();
        };
        end(&state, self, reason)
    }
}

fn end(state: &State, audience: &Audience, reason: &str) -> Disconnected {
    let reason = close_reason(reason);
    let mut ended = Disconnected::default();
    let mut all_published = true;
    let mut any = false;
    for stream in audience.streams() {
        if matches!(stream, Stream::User(id) if id.too_long()) {
            continue;
        }
        any = true;
        ended.local += state.hub.close(stream, SESSION_ENDED, reason);
        all_published &= state.delivery.end_sessions(stream, reason);
    }
    ended.published = any && all_published;
    if let Some(t) = &state.telemetry {
        t.sessions_ended(ended.local);
    }
    tracing::info!(
        closed = ended.local,
        published = ended.published,
        "sessions ended: {reason}"
    );
    ended
}

/// How many identities one run of the revalidation hook gets at most (a server holding more
/// makes several).
const BATCH: usize = 1000;

/// The close reason of a session the revalidation hook ended.
const REVOKED: &str = "session revoked";

/// Starts the revalidation task, once, at the first identified connection (a server may be
/// built before a runtime runs); it ends with the server.
pub(crate) fn revalidate(state: &Arc<State>) {
    let Some(settings) = &state.revalidation else {
        return;
    };
    if !settings.start() {
        return;
    }
    // Not in the server's scope: that would hold the server for the task's whole life, and
    // the task ends when the server is gone. Each run of the hook is in it.
    tokio::spawn(run(Arc::downgrade(state), settings.every));
}

/// Every `every`, hands the identities connected here to the hook, a batch at a time, and ends
/// the local sessions of those it returns. Local only: each server revalidates its own.
async fn run(state: Weak<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ids) = state.upgrade().map(|s| s.hub.identity_list()) else {
            return;
        };
        for batch in ids.chunks(BATCH) {
            let Some(s) = state.upgrade() else {
                return;
            };
            let Some(hook) = s.revalidation.as_ref().map(|r| r.hook.clone()) else {
                return;
            };
            // A hook that never answers must not stop revalidation: it has one interval.
            let run = Box::pin(in_scope(s.clone(), hook(batch.to_vec())));
            drop(s);
            let ended = match tokio::time::timeout(every, super::panic::CatchUnwind::other(run))
                .await
            {
                Ok(Ok(ended)) => ended,
                Ok(Err(_)) => {
                    tracing::error!("the revalidation hook panicked; its batch is kept");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(
                        "the revalidation hook did not answer within its interval ({every:?}); its batch is kept"
                    );
                    continue;
                }
            };
            let Some(s) = state.upgrade() else {
                return;
            };
            let closed: usize = ended
                .iter()
                .map(|id| s.hub.close(Stream::User(id), SESSION_ENDED, REVOKED))
                .sum();
            if let Some(t) = &s.telemetry {
                t.sessions_ended(closed);
            }
            if closed > 0 {
                tracing::info!(
                    identities = ended.len(),
                    closed,
                    "the revalidation hook ended sessions"
                );
            }
        }
    }
}
