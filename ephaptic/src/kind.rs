//! How a function's return value becomes an [`Outcome`]: chosen at compile time from the
//! concrete return type, by method-resolution order ("autoref specialisation"), so that one
//! `#[expose]` works for every shape a handler returns:
//!
//! | returns | answers |
//! |---|---|
//! | `Result<S, E>`, `S` a stream of `Result<T, E2>` | `stream`, `chunk`*, then `done` or an error frame |
//! | `Result<S, E>`, `S` a stream of `T` | the same; items cannot fail |
//! | `Result<T, E>` | `result` or `error` |
//! | a stream of `Result<T, E2>` / of `T` | as above |
//! | `T` | `result` |
//!
//! where `T: Serialize` and `E, E2: Into<ephaptic::Error>`. The generated code calls
//! `(&&&&&&tag(&out)).__ephaptic_kind().outcome(out, &call)`: the first trait whose impl applies,
//! in the order of the table, wins. Functions are never generic, so the type is always known.

use std::convert::Infallible;
use std::marker::PhantomData;

use futures_core::Stream;
use futures_util::StreamExt;
use serde::Serialize;

use crate::caller::Caller;
use crate::dispatch::{Call, Outcome};
use crate::emit::Audience;
use crate::error::Error;

/// Carries a type for method resolution; holds no value.
#[derive(Debug)]
pub struct Tag<T>(PhantomData<T>);

/// The tag of a value's type.
pub fn tag<T>(_: &T) -> Tag<T> {
    Tag(PhantomData)
}

macro_rules! kinds {
    ($( $trait:ident => $marker:ident; )*) => {$(
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct $marker;
        #[doc(hidden)]
        pub trait $trait {
            fn __ephaptic_kind(&self) -> $marker {
                $marker
            }
        }
    )*};
}

kinds! {
    ResultTryStreamKind => ResultTryStream;
    ResultStreamKind => ResultStream;
    ResultValueKind => ResultValue;
    TryStreamKind => TryStream;
    StreamKind => PlainStream;
    ValueKind => Value;
}

impl<S, T, E, E2> ResultTryStreamKind for &&&&&Tag<Result<S, E>>
where
    S: Stream<Item = Result<T, E2>> + Send + 'static,
    T: Serialize,
    E: Into<Error>,
    E2: Into<Error>,
{
}

impl ResultTryStream {
    pub fn outcome<S, T, E, E2>(self, out: Result<S, E>, call: &Call) -> Outcome
    where
        S: Stream<Item = Result<T, E2>> + Send + 'static,
        T: Serialize,
        E: Into<Error>,
        E2: Into<Error>,
    {
        match out {
            Ok(stream) => call.stream(stream),
            Err(e) => Outcome::Error(e.into()),
        }
    }
}

impl<S, E> ResultStreamKind for &&&&Tag<Result<S, E>>
where
    S: Stream + Send + 'static,
    S::Item: Serialize,
    E: Into<Error>,
{
}

impl ResultStream {
    pub fn outcome<S, E>(self, out: Result<S, E>, call: &Call) -> Outcome
    where
        S: Stream + Send + 'static,
        S::Item: Serialize,
        E: Into<Error>,
    {
        match out {
            Ok(stream) => call.stream(stream.map(Ok::<_, Infallible>)),
            Err(e) => Outcome::Error(e.into()),
        }
    }
}

impl<T, E> ResultValueKind for &&&Tag<Result<T, E>>
where
    T: Serialize,
    E: Into<Error>,
{
}

impl ResultValue {
    pub fn outcome<T, E>(self, out: Result<T, E>, call: &Call) -> Outcome
    where
        T: Serialize,
        E: Into<Error>,
    {
        match out {
            Ok(v) => call.reply(&v),
            Err(e) => Outcome::Error(e.into()),
        }
    }
}

impl<S, T, E2> TryStreamKind for &&Tag<S>
where
    S: Stream<Item = Result<T, E2>> + Send + 'static,
    T: Serialize,
    E2: Into<Error>,
{
}

impl TryStream {
    pub fn outcome<S, T, E2>(self, out: S, call: &Call) -> Outcome
    where
        S: Stream<Item = Result<T, E2>> + Send + 'static,
        T: Serialize,
        E2: Into<Error>,
    {
        call.stream(out)
    }
}

impl<S> StreamKind for &Tag<S>
where
    S: Stream + Send + 'static,
    S::Item: Serialize,
{
}

impl PlainStream {
    pub fn outcome<S>(self, out: S, call: &Call) -> Outcome
    where
        S: Stream + Send + 'static,
        S::Item: Serialize,
    {
        call.stream(out.map(Ok::<_, Infallible>))
    }
}

impl<T: Serialize> ValueKind for Tag<T> {}

impl Value {
    pub fn outcome<T: Serialize>(self, out: T, call: &Call) -> Outcome {
        call.reply(&out)
    }
}

// ---------------------------------------------------------------------------------------------
// Channels: after a function returns, announce its `Ok` value (or its plain value) on each
// channel named in `#[expose(broadcast = [..])]`, to the audience `broadcast_to` picks.

#[doc(hidden)]
#[derive(Debug)]
pub struct AnnounceResult;
#[doc(hidden)]
#[derive(Debug)]
pub struct AnnounceValue;

#[doc(hidden)]
pub trait AnnounceResultKind {
    fn __ephaptic_announce_kind(&self) -> AnnounceResult {
        AnnounceResult
    }
}
#[doc(hidden)]
pub trait AnnounceValueKind {
    fn __ephaptic_announce_kind(&self) -> AnnounceValue {
        AnnounceValue
    }
}

impl<T: Serialize, E> AnnounceResultKind for &Tag<Result<T, E>> {}
impl<T: Serialize> AnnounceValueKind for Tag<T> {}

impl AnnounceResult {
    pub async fn announce<T: Serialize, E>(
        self,
        out: &Result<T, E>,
        call: &Call,
        channels: &[&str],
        audience: impl FnOnce(&Caller, &T) -> Audience,
    ) {
        // Nothing is announced when the function failed.
        if let Ok(value) = out {
            announce(value, call, channels, audience).await;
        }
    }
}

impl AnnounceValue {
    pub async fn announce<T: Serialize>(
        self,
        out: &T,
        call: &Call,
        channels: &[&str],
        audience: impl FnOnce(&Caller, &T) -> Audience,
    ) {
        announce(out, call, channels, audience).await;
    }
}

async fn announce<T: Serialize>(
    value: &T,
    call: &Call,
    channels: &[&str],
    audience: impl FnOnce(&Caller, &T) -> Audience,
) {
    let audience = audience(&call.caller(), value);
    for channel in channels {
        audience.emit_named(channel, value).await;
    }
}
