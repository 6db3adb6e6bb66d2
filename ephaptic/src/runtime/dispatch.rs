//! Running one call: find the function, check access, bind and poll it once inline, and
//! answer at once or move it into a task of its own; then send what it answers (a result, an
//! error, or a stream of chunks).
//!
//! The fast path (the first poll inline, with a no-op waker) lives here and only here: most
//! functions finish on their first poll, and their reply then goes out with the other answers
//! to the same read, with no task, no call-table entry, no trip through the queue and no
//! cross-thread wake-up (`examples/bench/NOTES.md`, step 3: 306k -> 522k calls/s).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::answer::{Answer, log_internal, send_outcome};
use super::loglimit::Quoted;
use super::panic::{self, CatchUnwind, panicked};
use super::ratelimit::Check;
use super::scope::in_scope;
use super::state::State;
use super::telemetry::{Meter, Stopwatch};
use crate::error::Error;
use crate::handler::{FunctionDef, Outcome, Request, Started};
use crate::session::{Connection, Outbox};
use crate::wire::{NIL, RawFrame};
use tracing::Instrument;

/// Starts a call read from `frame`, without waiting: answers at once when it cannot run or
/// finishes on its first poll, otherwise runs it on in a task of its own that the connection
/// can cancel. Runs inside the server's task-local scope (the connection's task sets it).
pub(crate) fn start(
    state: &Arc<State>,
    conn: &Arc<Connection>,
    frame: &Bytes,
    raw: &RawFrame,
    out: &mut Outbox,
) {
    let id_bytes = raw.id(frame);

    let name = match raw.name {
        Some(r) => r.of(frame),
        None => {
            let why = if raw.name_not_string {
                "'name' must be a string"
            } else {
                "the frame has no 'name'"
            };
            let e = Error::new("VALIDATION_ERROR", format!("Invalid call: {why}."));
            out.push(e.to_frame(id_bytes, false));
            return;
        }
    };

    if conn.credentials().expired() && name != super::expiry::REFRESH {
        // The identity's grant ran out and no refresh came: its session is ending (the timer
        // closes it), and nothing more runs under the old credentials.
        out.push(super::expiry::expired().to_frame(id_bytes, false));
        return;
    }

    let Some((index, def)) = state.functions.get(name) else {
        // Reserved names are looked for only among the names no function has (a function's
        // name is a Rust identifier, so never one of them).
        if name == super::expiry::REFRESH {
            // Counted and cancellable like a call, one at a time: the loader runs on the new
            // credentials, and a client must not make it run in parallel.
            let limit = state.config.max_calls_in_flight;
            if conn.calls_running() >= limit {
                out.push(too_many_calls(limit).to_frame(id_bytes, false));
                return;
            }
            if !conn.start_refresh() {
                let e = Error::new(
                    "TOO_MANY_CALLS",
                    "A refresh of this connection's credentials is running: wait for its answer.",
                );
                out.push(e.to_frame(id_bytes, false));
                return;
            }
            let auth = refreshed_auth(frame, raw);
            let (key, id) = keys(frame, raw);
            spawn_call(state, conn, key, {
                let done = super::expiry::RefreshDone(conn.clone());
                let refresh = super::expiry::refresh(state.clone(), conn.clone(), id, auth);
                async move {
                    let _done = done;
                    refresh.await;
                }
            });
            return;
        }
        if name == super::resume::HELLO {
            // A call like any other (counted, cancellable, drained), one at a time: a hello
            // reads history, and a client must not make the server read it in parallel.
            let limit = state.config.max_calls_in_flight;
            if conn.calls_running() >= limit || !conn.start_hello() {
                out.push(too_many_calls(limit).to_frame(id_bytes, false));
                return;
            }
            let (key, id) = keys(frame, raw);
            spawn_call(state, conn, key, {
                let done = super::resume::HelloDone(conn.clone());
                let hello = super::resume::hello(state.clone(), conn.clone(), id);
                async move {
                    let _done = done;
                    hello.await;
                }
            });
            return;
        }
        if let Some(answer) = super::presence::reserved(state, conn, name, frame, raw) {
            let limit = state.config.max_calls_in_flight;
            if conn.calls_running() >= limit {
                out.push(too_many_calls(limit).to_frame(id_bytes, false));
                return;
            }
            let (key, _) = keys(frame, raw);
            let task_conn = conn.clone();
            spawn_call(state, conn, key, async move {
                task_conn.send(answer.await).await;
            });
            return;
        }
        // `parse` checked that the name is UTF-8.
        let name = std::str::from_utf8(name).unwrap_or_default();
        // The name is the client's: escaped and cut short (`Quoted`), so it can neither forge
        // log lines nor make one long; and counted with the connection's unusable frames, so a
        // flood of them is a count, not a line each.
        if conn.note_bad_frame() {
            let quoted = Quoted(name);
            tracing::warn!(
                function = %quoted,
                "call to unknown function {quoted}; the server serves {} function(s). If it is defined with \
                 #[ephaptic::expose], this server may be older than the client (restart it after adding \
                 functions), or its crate or module is not linked (`use my_handlers as _;`; or register \
                 it with `Server::new().register::<function_name>()`)",
                state.registry.functions.len()
            );
        }
        let mut e = Error::not_found(name);
        if state.config.debug {
            e = Error::new(
                "NOT_FOUND",
                format!(
                    "Function '{name}' not found. Is the server older than the client (restart it after adding functions), or is the module that defines it not linked (or registered with Server::register)?"
                ),
            );
        }
        if let Some(t) = &state.telemetry {
            t.unknown();
        }
        out.push(e.to_frame(id_bytes, false));
        return;
    };

    // The call's span (at DEBUG: nothing to build unless a subscriber wants it); what runs
    // here, the first poll included, runs in it, and its tasks are instrumented with it.
    let span = super::spans::call_span(
        def,
        conn.id(),
        frame,
        raw,
        state.trace_parent.as_ref(),
        state.config.sampling,
    );
    let _in = span.enter();
    // With metrics on, the call is timed from here to its answer.
    let watch = state.telemetry.is_some().then(|| Stopwatch::start(index));

    if def.requires_login && conn.identity().is_none() {
        refuse(&span, state, watch, Error::unauthorized(), id_bytes, out);
        return;
    }
    if state.draining() {
        refuse(
            &span,
            state,
            watch,
            super::drain::shutting_down(),
            id_bytes,
            out,
        );
        return;
    }
    let limit = state.config.max_calls_in_flight;
    if conn.calls_running() >= limit {
        refuse(&span, state, watch, too_many_calls(limit), id_bytes, out);
        return;
    }
    // Before anything is decoded: what the arguments would decode to is bounded too.
    if let Err(e) = crate::handler::check_cost(frame, raw, state.config.max_frame_nodes) {
        refuse(&span, state, watch, e, id_bytes, out);
        return;
    }
    // An idempotent function's call with a key runs once per key (`idempotency.rs`).
    let once = match def.idempotent {
        true => match super::idempotency::key_of(frame, raw) {
            Ok(key) => key.map(str::to_owned),
            Err(e) => {
                refuse(&span, state, watch, e, id_bytes, out);
                return;
            }
        },
        false => None,
    };
    match state.limiter.check(def, conn) {
        Check::Allowed => {}
        Check::Refused(e) => {
            refuse(&span, state, watch, e, id_bytes, out);
            return;
        }
        Check::Shared(decision) => {
            let later = Later {
                decision: Some(decision),
                once,
                span: span.clone(),
                meter: Meter::of(state.telemetry.as_ref(), watch),
            };
            start_after(state, conn, frame, raw, def, later);
            return;
        }
    }
    if once.is_some() {
        let later = Later {
            decision: None,
            once,
            span: span.clone(),
            meter: Meter::of(state.telemetry.as_ref(), watch),
        };
        start_after(state, conn, frame, raw, def, later);
        return;
    }

    // Fast path: bind the arguments and poll the function once, right here. Most functions
    // (`add`) finish on their first poll; their reply is written with the other answers to
    // this read, without a task, a call-table entry, a trip through the queue or a
    // cross-thread wake-up. A function that is not ready yet moves into a task of its own,
    // exactly as if it had been spawned at first: the task polls it again at once, with the
    // task's own waker (so the no-op waker of this first poll is never relied on), it stays
    // concurrent with the connection's other calls, and it can be cancelled.
    let request = Request::new(frame, raw, def.call_sig(), conn, &state.hub);
    let first = panic::catch(def.name, || match (def.handler)(&request) {
        Started::Done(outcome) => Ok(outcome),
        Started::Running(mut fut) => {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(outcome) => Ok(outcome),
                Poll::Pending => Err(fut),
            }
        }
    });
    let debug = Answer::of(state, None);
    let outcome = match first {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(running)) => {
            let (key, id) = keys(frame, raw);
            let task_conn = conn.clone();
            let debug = debug.metered(Meter::of(state.telemetry.as_ref(), watch));
            let rest = async move {
                let outcome = match CatchUnwind::handler(def.name, running).await {
                    Ok(outcome) => outcome,
                    Err(panic) => Outcome::Error(panicked(def.name, panic)),
                };
                send_outcome(task_conn, debug, def, id, outcome).await;
            };
            spawn_call(state, conn, key, rest.instrument(span.clone()));
            return;
        }
        Err(panic) => Outcome::Error(panicked(def.name, panic)),
    };
    let reply = match outcome {
        Outcome::Reply(reply) => {
            super::spans::record_code(&span, "OK");
            measured(state, watch, "OK");
            debug.bounded(reply, id_bytes, def)
        }
        Outcome::Error(e) => {
            super::spans::record_code(&span, e.code());
            measured(state, watch, e.code());
            log_internal(def, &e);
            e.to_frame(id_bytes, debug.debug)
        }
        stream @ Outcome::Stream(_) => {
            let (key, id) = keys(frame, raw);
            let debug = debug.metered(Meter::of(state.telemetry.as_ref(), watch));
            let rest = send_outcome(conn.clone(), debug, def, id, stream);
            spawn_running(state, conn, key, true, rest.instrument(span.clone()));
            return;
        }
    };
    if let Err(reply) = conn.answer_now(reply, out) {
        // The queue is full: wait for room in a task, so that only this call waits.
        let (key, id) = keys(frame, raw);
        let rest = send_outcome(conn.clone(), debug, def, id, Outcome::Reply(reply));
        spawn_call(state, conn, key, rest.instrument(span.clone()));
    }
}

/// Answers a call that does not run with `e`, and says so on its span.
fn refuse(
    span: &tracing::Span,
    state: &State,
    watch: Option<Stopwatch>,
    e: Error,
    id: &[u8],
    out: &mut Outbox,
) {
    super::spans::record_code(span, e.code());
    measured(state, watch, e.code());
    out.push(e.to_frame(id, false));
}

/// Counts a call answered inline with `code` (with metrics on).
#[inline]
fn measured(state: &State, watch: Option<Stopwatch>, code: &str) {
    if let (Some(t), Some(w)) = (&state.telemetry, watch) {
        w.stop(t, code);
    }
}

/// `TOO_MANY_CALLS`: the connection has `limit` calls running; this one is not started.
#[cold]
fn too_many_calls(limit: usize) -> Error {
    #[derive(serde::Serialize)]
    struct Limit {
        limit: usize,
    }
    Error::new(
        "TOO_MANY_CALLS",
        format!(
            "This connection has {limit} calls in flight, the most it may; wait for some to finish."
        ),
    )
    .with_data(&Limit { limit })
}

/// What a call started in a task of its own waits for or runs under.
struct Later {
    /// The shared rate limiter's decision, to await first.
    decision: Option<crate::handler::BoxFuture<Result<(), Error>>>,
    /// Its idempotency key, for an idempotent function.
    once: Option<String>,
    span: tracing::Span,
    meter: Option<Meter>,
}

/// Starts a call in a task of its own (cancellable like any running call): one whose rate
/// limit is decided by a limiter shared with other servers (it awaits the `decision` first),
/// and one with an idempotency key (`once`: it runs once per key, `idempotency.rs`). It binds
/// the arguments there, then runs the function.
#[cold]
fn start_after(
    state: &Arc<State>,
    conn: &Arc<Connection>,
    frame: &Bytes,
    raw: &RawFrame,
    def: &'static FunctionDef,
    later: Later,
) {
    let Later {
        decision,
        once,
        span,
        meter,
    } = later;
    let (key, id) = keys(frame, raw);
    let (frame, raw) = (frame.clone(), raw.clone());
    let (task_conn, task_state) = (conn.clone(), state.clone());
    let debug = Answer::of(state, meter);
    let rest = async move {
        if let Some(decision) = decision
            && let Err(e) = decision.await
        {
            super::spans::record_code(&tracing::Span::current(), e.code());
            debug.answered(e.code());
            task_conn.send(e.to_frame(&id, false)).await;
            return;
        }
        let started = panic::catch(def.name, || {
            let request = Request::new(&frame, &raw, def.call_sig(), &task_conn, &task_state.hub);
            (def.handler)(&request)
        });
        let outcome = match started {
            Ok(Started::Done(outcome)) => outcome,
            Ok(Started::Running(running)) if once.is_some() => {
                let key = once.unwrap_or_default();
                let run = super::idempotency::once;
                run(task_state, task_conn, def, id, key, running, debug).await;
                return;
            }
            Ok(Started::Running(running)) => match CatchUnwind::handler(def.name, running).await {
                Ok(outcome) => outcome,
                Err(panic) => Outcome::Error(panicked(def.name, panic)),
            },
            Err(panic) => Outcome::Error(panicked(def.name, panic)),
        };
        send_outcome(task_conn, debug, def, id, outcome).await;
    };
    spawn_call(state, conn, key, rest.instrument(span));
}

/// The credentials a refresh call carries: its first argument, or `kwargs.auth`; none when it
/// has neither (the loader then runs without `auth`, as for an `init` without one).
fn refreshed_auth(frame: &Bytes, raw: &RawFrame) -> Option<Bytes> {
    let span = raw.args.first().copied().or_else(|| {
        raw.kwargs
            .iter()
            .find(|(k, _)| k.of(frame) == b"auth")
            .map(|(_, v)| *v)
    })?;
    Some(frame.slice(span.range()))
}

/// A running call's key in the connection's call table (the encoded id, empty without one)
/// and the id its later answers echo.
fn keys(frame: &Bytes, raw: &RawFrame) -> (Bytes, Bytes) {
    let key = frame.slice(raw.id.range());
    let id = if key.is_empty() {
        Bytes::from_static(NIL)
    } else {
        key.clone()
    };
    (key, id)
}

/// Runs the rest of a call in a task of its own that the connection can cancel (by `key`).
fn spawn_call<F>(state: &Arc<State>, conn: &Arc<Connection>, key: Bytes, rest: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    spawn_running(state, conn, key, false, rest);
}

/// [`spawn_call`], saying whether it is a stream (which a shutdown ends at once).
fn spawn_running<F>(state: &Arc<State>, conn: &Arc<Connection>, key: Bytes, stream: bool, rest: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let state = state.clone();
    let seq = conn.next_call_seq();
    let task_conn = conn.clone();
    let task_key = key.clone();
    conn.spawn_call(key, seq, stream, move || {
        tokio::spawn(in_scope(state, async move {
            rest.await;
            task_conn.finish_call(&task_key, seq);
        }))
        .abort_handle()
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use rmpv::Value;

    use super::*;
    use crate::runtime::inbound;
    use crate::runtime::state::Config;
    use crate::session::{Receiver, outbound};

    static DROPPED: AtomicBool = AtomicBool::new(false);

    #[crate::expose]
    async fn dispatch_test_add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[crate::expose]
    async fn dispatch_test_sleep(ms: u64) -> bool {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        true
    }

    /// Pending for ever; notes when its future is dropped (cancelled).
    #[crate::expose]
    async fn dispatch_test_forever() -> bool {
        struct Mark;
        impl Drop for Mark {
            fn drop(&mut self) {
                DROPPED.store(true, Ordering::SeqCst);
            }
        }
        let _mark = Mark;
        std::future::pending::<()>().await;
        true
    }

    #[crate::expose]
    async fn dispatch_test_panic(later: bool) -> i64 {
        if later {
            tokio::task::yield_now().await;
        }
        panic!("boom")
    }

    fn harness() -> (Arc<State>, Arc<Connection>, Receiver) {
        let state = State::for_tests(Config::default());
        let (out, rx) = outbound::channel(state.outbound.clone());
        let conn = Connection::new(state.next_connection_id(), None, None, out);
        state.hub.add(&conn);
        (state, conn, rx)
    }

    fn encode(frame: Value) -> Bytes {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &frame).unwrap();
        Bytes::from(out)
    }

    fn call(id: i64, name: &str, args: Vec<Value>) -> Bytes {
        encode(Value::Map(vec![
            ("type".into(), "rpc".into()),
            ("id".into(), id.into()),
            ("name".into(), name.into()),
            ("args".into(), Value::Array(args)),
        ]))
    }

    fn decode(frame: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &frame[..]).unwrap()
    }

    fn field<'v>(v: &'v Value, key: &str) -> &'v Value {
        v.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            .map(|(_, v)| v)
            .unwrap_or(&Value::Nil)
    }

    fn on_frame(state: &Arc<State>, conn: &Arc<Connection>, frame: Bytes) -> Outbox {
        let mut out = Outbox::new();
        crate::runtime::sync_in_scope(state.clone(), || {
            inbound::on_frame(state, conn, frame, false, &mut out)
        });
        out
    }

    /// The one frame answered at once to a call.
    fn answered(state: &Arc<State>, conn: &Arc<Connection>, frame: Bytes) -> Value {
        let out = on_frame(state, conn, frame);
        assert_eq!(
            out.len(),
            1,
            "answered with the read, not through the queue"
        );
        decode(&out[0])
    }

    #[tokio::test]
    async fn a_call_that_finishes_on_its_first_poll_is_answered_inline() {
        let (state, conn, mut rx) = harness();
        let reply = answered(
            &state,
            &conn,
            call(1, "dispatch_test_add", vec![2.into(), 3.into()]),
        );
        assert_eq!(field(&reply, "result"), &Value::from(5));
        assert_eq!(conn.calls_running(), 0, "no task was spawned");
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_pending_call_moves_into_a_task_and_answers_through_the_queue() {
        let (state, conn, mut rx) = harness();
        let out = on_frame(
            &state,
            &conn,
            call(2, "dispatch_test_sleep", vec![30.into()]),
        );
        assert!(out.is_empty());
        assert_eq!(conn.calls_running(), 1);
        // The task polls the function again with its own waker, which the timer wakes.
        let reply = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        let reply = decode(&reply.unwrap());
        assert_eq!(field(&reply, "id"), &Value::from(2));
        assert_eq!(field(&reply, "result"), &Value::from(true));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(conn.calls_running(), 0, "a finished call leaves the table");
    }

    #[tokio::test]
    async fn cancel_stops_a_running_call_and_nothing_answers_it() {
        let (state, conn, mut rx) = harness();
        DROPPED.store(false, Ordering::SeqCst);
        assert!(on_frame(&state, &conn, call(3, "dispatch_test_forever", vec![])).is_empty());
        assert_eq!(conn.calls_running(), 1);
        let cancel = encode(Value::Map(vec![
            ("type".into(), "cancel".into()),
            ("id".into(), 3.into()),
        ]));
        assert!(on_frame(&state, &conn, cancel).is_empty());
        assert_eq!(conn.calls_running(), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            DROPPED.load(Ordering::SeqCst),
            "the function's future was dropped"
        );
        assert_eq!(rx.try_recv(), None, "a cancelled call sends nothing");
    }

    #[tokio::test]
    async fn a_panic_costs_its_own_call_only() {
        let (state, conn, mut rx) = harness();
        let reply = answered(
            &state,
            &conn,
            call(4, "dispatch_test_panic", vec![false.into()]),
        );
        let error = field(&reply, "error").clone();
        assert_eq!(field(&error, "code"), &Value::from("INTERNAL"));
        assert_eq!(
            field(&error, "message"),
            &Value::from("Internal server error.")
        );

        // A panic after the first poll, in the call's own task.
        assert!(
            on_frame(
                &state,
                &conn,
                call(5, "dispatch_test_panic", vec![true.into()])
            )
            .is_empty()
        );
        let reply = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        let reply = decode(&reply.unwrap());
        assert_eq!(field(&reply, "id"), &Value::from(5));
        assert_eq!(
            field(field(&reply, "error"), "code"),
            &Value::from("INTERNAL")
        );

        // The connection goes on.
        let reply = answered(
            &state,
            &conn,
            call(6, "dispatch_test_add", vec![1.into(), 1.into()]),
        );
        assert_eq!(field(&reply, "result"), &Value::from(2));
    }

    #[tokio::test]
    async fn unknown_functions_and_bad_arguments_are_answered_at_once() {
        let (state, conn, _rx) = harness();
        let code = |reply: Value| field(field(&reply, "error"), "code").clone();
        let reply = answered(&state, &conn, call(7, "no_such_function", vec![]));
        assert_eq!(code(reply), Value::from("NOT_FOUND"));
        let reply = answered(
            &state,
            &conn,
            call(8, "dispatch_test_add", vec!["x".into()]),
        );
        assert_eq!(code(reply), Value::from("VALIDATION_ERROR"));
        assert_eq!(conn.calls_running(), 0);
    }
}
