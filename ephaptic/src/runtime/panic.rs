//! Panics in handlers cost their own call only: caught where a handler is polled and turned
//! into `INTERNAL`. And a few lines of log: a client that makes a function panic at will makes
//! it log a few times a minute (`loglimit`), the panic hook's message and backtrace included.
//!
//! The hook is what writes "thread '..' panicked at .." (and, under `RUST_BACKTRACE=1`, a
//! backtrace: 20,000 panicking calls wrote 148 MB of stderr). It runs before the panic is
//! caught, so the runtime wraps it once (when a server's router is built): a panic while a
//! handler is polled ([`catch`] marks it, thread-locally) goes to the previous hook only when
//! that function's failures are logged in full; every other panic goes to it as before.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::loglimit::{self, Verdict};
use crate::error::Error;

thread_local! {
    /// The function whose handler this thread is polling, while it is.
    static POLLING: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// What the hook decided for a panic in it: whether its lines are written.
    static DECIDED: Cell<Option<Verdict>> = const { Cell::new(None) };
}

/// A caught panic: its payload, and what the hook decided about its log lines (`None` when
/// the hook was not ours: the app replaced it, or it was not a handler's panic).
pub(crate) struct Panic {
    payload: Box<dyn Any + Send>,
    verdict: Option<Verdict>,
}

/// Runs `f`, a call or a poll of `function`'s handler, turning a panic into `Err`.
pub(crate) fn catch<R>(function: &'static str, f: impl FnOnce() -> R) -> Result<R, Panic> {
    let outer = POLLING.replace(Some(function));
    let caught = catch_unwind(AssertUnwindSafe(f));
    POLLING.set(outer);
    // Taken whatever happened: a panic the handler caught itself leaves a verdict too.
    let verdict = DECIDED.take();
    caught.map_err(|payload| Panic { payload, verdict })
}

/// The `INTERNAL` error a handler's panic answers with; its line (`'add' failed: panicked:
/// ..`) is written now, when the function's failures are logged in full.
pub(crate) fn panicked(function: &'static str, panic: Panic) -> Error {
    let what = panic
        .payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into());
    let detail = format!("panicked: {what}");
    let verdict = panic.verdict.unwrap_or_else(|| loglimit::failure(function));
    loglimit::log_failure(function, verdict, &detail);
    Error::internal(detail).logged()
}

/// Wraps the process's panic hook, once: a panic while a handler is polled reaches the
/// previous hook only when its function's failures are logged in full (see the module).
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic while this thread's locals are torn down is not a handler's.
            let Some(function) = POLLING.try_with(Cell::get).ok().flatten() else {
                return previous(info);
            };
            let verdict = loglimit::failure(function);
            let _ = DECIDED.try_with(|d| d.set(Some(verdict)));
            if verdict.logs() {
                previous(info);
            }
        }));
    });
}

/// Polls a future or stream and turns a panic inside it into an `Err`, so a panicking handler
/// costs its own call only. A handler's (`function` named) is polled through [`catch`].
pub(crate) struct CatchUnwind<F> {
    inner: F,
    function: Option<&'static str>,
}

impl<F> CatchUnwind<F> {
    /// Polls `inner`, the future or stream of `function`'s handler.
    pub fn handler(function: &'static str, inner: F) -> Self {
        CatchUnwind {
            inner,
            function: Some(function),
        }
    }

    /// Polls `inner`, which is not a handler's (the identity loader's): its panics go to the
    /// panic hook as they would anywhere.
    pub fn other(inner: F) -> Self {
        CatchUnwind {
            inner,
            function: None,
        }
    }

    fn caught<R>(&mut self, poll: impl FnOnce(&mut F) -> R) -> Result<R, Panic> {
        let inner = &mut self.inner;
        match self.function {
            Some(function) => catch(function, || poll(inner)),
            None => catch_unwind(AssertUnwindSafe(|| poll(inner))).map_err(|payload| Panic {
                payload,
                verdict: None,
            }),
        }
    }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.caught(|f| Pin::new(f).poll(cx)) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

impl<S: Stream + Unpin> CatchUnwind<S> {
    pub fn poll_next_caught(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<S::Item>, Panic>> {
        match self.caught(|s| Pin::new(s).poll_next(cx)) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
