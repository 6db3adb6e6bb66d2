//! Panics in handlers cost their own call only: caught where a handler is polled and turned
//! into `INTERNAL`.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::Error;

pub(crate) fn panicked(panic: Box<dyn Any + Send>) -> Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into());
    Error::internal(format_args!("panicked: {what}"))
}

/// What a caught panic carries.
type Panic = Box<dyn Any + Send>;

/// Polls a future or stream and turns a panic inside it into an `Err`, so a panicking handler
/// costs its own call only.
pub(crate) struct CatchUnwind<F>(pub F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
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
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll_next(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
