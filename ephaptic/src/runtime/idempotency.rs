//! Calls that take effect once (docs/PROTOCOL.md 5.12). A call of an `#[expose(idempotent)]`
//! function that carries an idempotency key (`key` in its `rpc` frame) runs at most once per
//! key and caller within the window: the first claims the key's slot and runs; a repeat (the
//! client re-sending after a reconnect, on this server or another) waits for the first if it
//! still runs, then gets its answer, under the repeat's own id.
//!
//! The function runs in a task of its own, detached from the connection: a connection that
//! drops mid-call does not stop it, so the answer its retry gets is the one the call had. Only
//! the wait for the answer is the connection's (cancelled by `cancel` or a close).
//!
//! The answers are kept in the window (`window.rs`): this server's memory, and with a backplane
//! the engine every server shares, so that a retry landing on another server is answered once
//! too. While the engine is away, the window is this server's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::answer::{Answer, log_internal, send_outcome};
use super::panic::{CatchUnwind, panicked};
use super::scope::in_scope;
use super::state::State;
use super::window::{Claim, Kept, Remote, Ticket, shared_slot};
use crate::error::Error;
use crate::handler::{BoxFuture, FunctionDef, Outcome};
use crate::session::Connection;
use crate::session::names::Every;
use crate::wire::{self, RawFrame, reply};
use tracing::Instrument;

/// The longest idempotency key, in bytes.
pub(crate) const MAX_KEY: usize = 128;

/// A call's idempotency key: `Ok(None)` without one; an error for one that is not a string of
/// 1 to [`MAX_KEY`] bytes.
pub(crate) fn key_of<'f>(frame: &'f [u8], raw: &RawFrame) -> Result<Option<&'f str>, Error> {
    if raw.key.is_empty() {
        return Ok(None);
    }
    match wire::whole_str(raw.key.of(frame)) {
        Some(k) if !k.is_empty() && k.len() <= MAX_KEY => Ok(Some(k)),
        _ => Err(Error::new(
            "VALIDATION_ERROR",
            format!(
                "Invalid call: 'key' (an idempotency key) must be a string of 1 to {MAX_KEY} bytes."
            ),
        )),
    }
}

/// How long a claim in the shared store holds without its run renewing it: a server that stops
/// mid-call (its claim never settled) holds a retry off this long at most, not the window.
const CLAIM_TTL: Duration = Duration::from_secs(30);

/// How often a running call renews its claim in the shared store.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The most idempotent calls that may run on a server at once. Their runs outlive their
/// connection's wait (a `cancel` or a close stops the wait, not the run), so the bound on
/// calls per connection does not hold them: this one does.
const MAX_RUNNING: usize = 10_000;

/// Runs an idempotent call with key `key` (as a call of the connection: its wait is what
/// `cancel` and a close stop), or answers it from the call that ran with that key.
pub(crate) async fn once(
    state: Arc<State>,
    conn: Arc<Connection>,
    def: &'static FunctionDef,
    id: Bytes,
    key: String,
    run: BoxFuture<Outcome>,
    how: Answer,
) {
    let answers = &state.answers;
    let caller = conn.identity();
    let local = answers.digest(def.name, caller, &key);
    let shared = answers
        .shared
        .as_ref()
        .map(|s| (s.clone(), shared_slot(def.name, caller, &key)));
    // How long to wait before asking the shared store again about a call another server runs.
    let mut poll = Duration::from_millis(10);
    loop {
        // This server's window first: a repeat here waits on the call running here (one
        // signal, no polling), and a call this server ran while the shared store was away
        // still answers its repeats here.
        let mut ticket = match answers.local.claim(local) {
            Claim::Done(kept) => {
                conn.send(kept.frame(&id)).await;
                return;
            }
            Claim::Wait(done) => {
                // Ends when the first call settles or lets the slot go; then claim again.
                if let Some(mut done) = done {
                    let _ = done.changed().await;
                }
                continue;
            }
            Claim::Mine(ticket) => ticket,
        };
        if let Some((store, slot)) = &shared {
            match store
                .claim(slot.clone(), CLAIM_TTL.min(answers.local.limits.window))
                .await
            {
                Ok(Remote::Mine) => ticket.shared = Some((store.clone(), slot.clone())),
                Ok(Remote::Running) => {
                    // Another server runs it: this server's waiters wait on whoever asks next.
                    drop(ticket);
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(Duration::from_millis(250));
                    continue;
                }
                Ok(Remote::Done(kept)) => {
                    conn.send(kept.frame(&id)).await;
                    ticket.settle(Some(kept)).await;
                    return;
                }
                // The shared store is away: this server's window decides alone.
                Err(()) => {}
            }
        }
        if answers.running() >= MAX_RUNNING {
            drop(ticket);
            let e = Error::new(
                "TOO_MANY_CALLS",
                format!(
                    "This server runs {MAX_RUNNING} idempotent calls at once, the most it may; call again shortly."
                ),
            );
            how.answered(e.code());
            conn.send(e.to_frame(&id, false)).await;
            return;
        }
        let span = tracing::Span::current();
        match run_detached(&state, def, &id, run, ticket, how.clone(), span).await {
            Ok(Answered::Frame(frame)) => {
                conn.send(frame).await;
            }
            Ok(Answered::Stream(stream)) => {
                send_outcome(conn, how, def, id, stream).await;
            }
            // The function's task was cut short (a shutdown): the slot is let go, and the
            // caller told.
            Err(_) => {
                conn.send(super::drain::shutting_down().to_frame(&id, false))
                    .await;
            }
        }
        return;
    }
}

/// What the detached run hands back to the connection's task.
enum Answered {
    Frame(Bytes),
    /// A function that answered with a stream: streams are not kept (each call runs its own).
    Stream(Outcome),
}

/// Runs the call in a task of its own (in the call's span), which settles the slot whatever
/// becomes of the connection's task, and renews its claim in the shared store while it runs.
fn run_detached(
    state: &Arc<State>,
    def: &'static FunctionDef,
    id: &Bytes,
    run: BoxFuture<Outcome>,
    ticket: Ticket,
    how: Answer,
    span: tracing::Span,
) -> tokio::task::JoinHandle<Answered> {
    let id = id.clone();
    let running = state.answers.started();
    let in_span = span.clone();
    let task = async move {
        let _running = running;
        let run = CatchUnwind::handler(def.name, run);
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                () = tokio::time::sleep(RENEW_EVERY), if ticket.shared.is_some() => {
                    if let Some((store, slot)) = &ticket.shared {
                        store.renew(slot.clone(), CLAIM_TTL).await;
                    }
                }
            }
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => Outcome::Error(panicked(def.name, panic)),
        };
        match &outcome {
            Outcome::Error(e) => super::spans::record_code(&span, e.code()),
            _ => super::spans::record_code(&span, "OK"),
        }
        let frame = match outcome {
            Outcome::Reply(frame) => how.bounded(frame, &id, def),
            Outcome::Error(e) => {
                log_internal(def, &e);
                e.to_frame(&id, how.debug)
            }
            stream @ Outcome::Stream(_) => {
                static LOGGED: Every = Every::new();
                if LOGGED.ready() {
                    tracing::warn!(
                        function = def.name,
                        "an idempotent function answered with a stream: streams are not kept, so each call with the key runs its own"
                    );
                }
                ticket.settle(None).await;
                return Answered::Stream(stream);
            }
        };
        let kept = reply::after_id(&frame, &id).map(|rest| Kept::of(rest, ticket.max_answer()));
        ticket.settle(kept).await;
        Answered::Frame(frame)
    };
    tokio::spawn(in_scope(state.clone(), task.instrument(in_span)))
}
