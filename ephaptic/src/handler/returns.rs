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
//! | anything else | a compile error at the return type naming the part that is wrong |
//!
//! where `T: Serialize` and `E, E2: Into<ephaptic::Error>`. The generated code calls
//! `(&&&&&&&tag(&out)).__ephaptic_kind().outcome(out, &call)`: the first trait whose impl applies,
//! in the order of the table, wins. Functions are never generic, so the type is always known.
//! Generated code does not write the ladder itself: it calls `outcome!` (and `announce_kind!` for
//! channels), defined below beside the impls whose rungs they count.

use std::convert::Infallible;
use std::marker::PhantomData;

use futures_core::Stream;
use futures_util::StreamExt;
use serde::Serialize;

use super::audience::Audience;
use super::caller::Caller;
use super::request::{Call, Outcome};
use crate::error::Error;

/// Carries a type for method resolution; holds no value.
#[derive(Debug)]
pub struct Tag<T>(PhantomData<T>);

/// The tag of a value's type.
pub fn tag<T>(_: &T) -> Tag<T> {
    Tag(PhantomData)
}

/// The return-shape ladder: `outcome!(out => outcome(out, &call))` turns a function's return
/// value into its [`Outcome`]. The method call is the caller's tokens, so that a type no rung
/// takes is reported at the user's return type, once. One `&` per rung of the table above the
/// last (`Unreturnable*`), so the depth is counted here, next to the impls, and nowhere else.
#[doc(hidden)]
#[macro_export]
macro_rules! __ephaptic_outcome {
    ($out:ident => $($call:tt)+) => {{
        #[allow(unused_imports)]
        use $crate::__private::{
            ResultAnyKind as _, ResultStreamKind as _, ResultTryStreamKind as _,
            ResultValueKind as _, StreamKind as _, TryStreamKind as _, UnreturnableKind as _,
            UnreturnableResult as _, UnreturnableStream as _, UnreturnableValue as _,
            ValueKind as _,
        };
        (&&&&&&&$crate::__private::tag(&$out)).__ephaptic_kind().$($call)+
    }};
}

/// The channel ladder: `announce_kind!(out)` picks how a return value is announced (see the
/// table before `AnnounceResultKind`); the caller then calls `prepare` or `prepare_everyone`
/// on what it gives.
#[doc(hidden)]
#[macro_export]
macro_rules! __ephaptic_announce_kind {
    ($out:ident) => {{
        #[allow(unused_imports)]
        use $crate::__private::{
            AnnounceAnyKind as _, AnnounceResultAnyKind as _, AnnounceResultKind as _,
            AnnounceResultStreamKind as _, AnnounceStreamKind as _, AnnounceValueKind as _,
        };
        (&&&&&$crate::__private::tag(&$out)).__ephaptic_announce_kind()
    }};
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

impl<S, T, E, E2> ResultTryStreamKind for &&&&&&Tag<Result<S, E>>
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

impl<S, E> ResultStreamKind for &&&&&Tag<Result<S, E>>
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

impl<T, E> ResultValueKind for &&&&Tag<Result<T, E>>
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

/// A `Result` that fits none of the shapes above (say `Result<T, String>`): routed to the
/// checks below so that it is a compile error naming the bad part, never silently sent as a
/// plain `{"Ok": ..}` value.
#[doc(hidden)]
pub trait ResultAnyKind<T, E> {
    fn __ephaptic_kind(&self) -> Unreturnable<Result<T, E>> {
        Unreturnable(PhantomData)
    }
}

impl<T, E> ResultAnyKind<T, E> for &&&Tag<Result<T, E>> {}

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

/// The last step of the return-kind dispatch in `kind.rs`, reached (by value, after every
/// `&Tag` step) only when the return type fits no shape, so that this is a readable error
/// at the return type naming the part that is wrong, rather than "method exists but its
/// trait bounds were not satisfied". Valid code never gets here. `outcome` is then picked
/// by receiver: a `Result` by value, a stream by `&`, anything else by `&mut`.
pub trait UnreturnableKind<T>: Sized {
    fn __ephaptic_kind(self) -> Unreturnable<T> {
        Unreturnable(PhantomData)
    }
}
impl<T> UnreturnableKind<T> for Tag<T> {}

#[derive(Debug)]
pub struct Unreturnable<T>(PhantomData<T>);

/// A `Result` that fits no shape: its `Ok` and error types are checked one by one.
pub trait UnreturnableResult<T, E> {
    fn outcome(self, out: Result<T, E>, call: &Call) -> Outcome
    where
        T: ReturnOk,
        E: ReturnErr;
}
impl<T, E> UnreturnableResult<T, E> for Unreturnable<Result<T, E>> {
    fn outcome(self, out: Result<T, E>, call: &Call) -> Outcome
    where
        T: ReturnOk,
        E: ReturnErr,
    {
        match out {
            Ok(v) => call.reply(&v),
            Err(e) => Outcome::Error(e.into()),
        }
    }
}

/// A stream whose items fit no shape.
pub trait UnreturnableStream<S: Stream> {
    fn outcome(&self, out: S, call: &Call) -> Outcome
    where
        S: Send + 'static,
        S::Item: StreamItem;
}
impl<S: Stream> UnreturnableStream<S> for Unreturnable<S> {
    fn outcome(&self, out: S, call: &Call) -> Outcome
    where
        S: Send + 'static,
        S::Item: StreamItem,
    {
        use futures_util::StreamExt;
        call.stream(out.map(Ok::<_, std::convert::Infallible>))
    }
}

/// Anything else that fits no shape.
pub trait UnreturnableValue<T> {
    fn outcome(&mut self, out: T, call: &Call) -> Outcome
    where
        T: Returnable;
}
impl<T> UnreturnableValue<T> for Unreturnable<T> {
    fn outcome(&mut self, out: T, call: &Call) -> Outcome
    where
        T: Returnable,
    {
        call.reply(&out)
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from an exposed function",
    label = "clients cannot receive this type",
    note = "return a type that implements `serde::Serialize` (derive it), or `Result<T, E>` with `T: Serialize` and `E: Into<ephaptic::Error>`",
    note = "or return a stream: `impl Stream<Item = T>` or `impl Stream<Item = Result<T, E>>`, possibly inside a `Result`"
)]
pub trait Returnable: serde::Serialize {}
impl<T: serde::Serialize> Returnable for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an item of a stream returned from an exposed function",
    label = "clients cannot receive the items of this stream",
    note = "derive `serde::Serialize` for the item type; to fail mid-stream, make the items `Result<T, E>` with `T: Serialize` and `E: Into<ephaptic::Error>`"
)]
pub trait StreamItem: serde::Serialize {}
impl<T: serde::Serialize> StreamItem for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the `Ok` value of an exposed function",
    label = "clients cannot receive this type",
    note = "derive `serde::Serialize` for it, or return a stream of such values: `impl Stream<Item = T>`"
)]
pub trait ReturnOk: serde::Serialize {}
impl<T: serde::Serialize> ReturnOk for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of an exposed function",
    label = "this error cannot be sent to clients",
    note = "declare it with `#[ephaptic::error(code = \"...\")]`, use `ephaptic::Error`, or implement `std::error::Error` for it (it is then answered as `INTERNAL`)"
)]
pub trait ReturnErr: Into<Error> {}
impl<E: Into<Error>> ReturnErr for E {}

// ---------------------------------------------------------------------------------------------
// Channels: after a function returns, announce its `Ok` value (or its plain value) on each
// channel named in `#[expose(broadcast = [..])]`, to the audience `broadcast_to` picks.
//
// The same method-resolution trick as above, on `(&&&&&tag(&out)).__ephaptic_announce_kind()`:
//
// | returns | announces |
// |---|---|
// | `Result<T, E>`, `T: Serialize` | the `Ok` value; nothing on `Err` |
// | `Result<S, E>`, `S` a stream | compile error: a stream cannot be announced |
// | any other `Result<T, E>` | compile error: `T` cannot be announced |
// | `T: Serialize` | the value |
// | a stream | compile error: a stream cannot be announced |
// | anything else | compile error: `T` cannot be announced |
//
// The error rows exist so that a mistake is reported at the return type in words, rather than
// as "no method named `__ephaptic_announce_kind`". Valid code never reaches them.

#[doc(hidden)]
pub trait AnnounceResultKind {
    fn __ephaptic_announce_kind(&self) -> AnnounceResult {
        AnnounceResult
    }
}
impl<T: Serialize, E> AnnounceResultKind for &&&&Tag<Result<T, E>> {}

#[doc(hidden)]
pub trait AnnounceResultStreamKind<S> {
    fn __ephaptic_announce_kind(&self) -> StreamNotAnnounced<S> {
        StreamNotAnnounced(PhantomData)
    }
}
impl<S: Stream, E> AnnounceResultStreamKind<S> for &&&Tag<Result<S, E>> {}

#[doc(hidden)]
pub trait AnnounceResultAnyKind<T> {
    fn __ephaptic_announce_kind(&self) -> NotAnnounced<T> {
        NotAnnounced(PhantomData)
    }
}
impl<T, E> AnnounceResultAnyKind<T> for &&Tag<Result<T, E>> {}

#[doc(hidden)]
pub trait AnnounceValueKind {
    fn __ephaptic_announce_kind(&self) -> AnnounceValue {
        AnnounceValue
    }
}
impl<T: Serialize> AnnounceValueKind for &Tag<T> {}

#[doc(hidden)]
pub trait AnnounceStreamKind<S> {
    fn __ephaptic_announce_kind(&self) -> StreamNotAnnounced<S> {
        StreamNotAnnounced(PhantomData)
    }
}
impl<S: Stream> AnnounceStreamKind<S> for Tag<S> {}

/// The last step, by value after every `&Tag` step: a return value that is neither
/// `Serialize` nor a stream.
#[doc(hidden)]
pub trait AnnounceAnyKind<T>: Sized {
    fn __ephaptic_announce_kind(self) -> NotAnnounced<T> {
        NotAnnounced(PhantomData)
    }
}
impl<T> AnnounceAnyKind<T> for Tag<T> {}

#[doc(hidden)]
#[derive(Debug)]
pub struct AnnounceResult;
#[doc(hidden)]
#[derive(Debug)]
pub struct AnnounceValue;
/// A function whose return value (or `Ok` value) `T` is not `Serialize`.
#[doc(hidden)]
#[derive(Debug)]
pub struct NotAnnounced<T>(PhantomData<T>);
/// A function that returns a stream `S` (possibly inside a `Result`).
#[doc(hidden)]
#[derive(Debug)]
pub struct StreamNotAnnounced<S>(PhantomData<S>);

// `prepare` is synchronous and takes the `broadcast_to` function as a fn pointer of the exact
// type, so a function with the wrong signature is reported once, at its path, as "expected fn
// pointer `fn(&Caller, &T) -> Audience`, found fn item ..."; `announce` has no bound that can
// fail, so nothing is reported again at the `.await`.

impl AnnounceResult {
    /// The `Ok` value and who hears it; `None` (and the audience function is not called) when
    /// the function failed.
    pub fn prepare<'a, T: Serialize, E>(
        self,
        out: &'a Result<T, E>,
        caller: &Caller,
        audience: fn(&Caller, &T) -> Audience,
    ) -> Option<(&'a T, Audience)> {
        let value = out.as_ref().ok()?;
        Some((value, audience(caller, value)))
    }

    pub fn prepare_everyone<T: Serialize, E>(self, out: &Result<T, E>) -> Option<(&T, Audience)> {
        Some((out.as_ref().ok()?, Audience::Everyone))
    }
}

impl AnnounceValue {
    pub fn prepare<'a, T: Serialize>(
        self,
        out: &'a T,
        caller: &Caller,
        audience: fn(&Caller, &T) -> Audience,
    ) -> Option<(&'a T, Audience)> {
        Some((out, audience(caller, out)))
    }

    pub fn prepare_everyone<T: Serialize>(self, out: &T) -> Option<(&T, Audience)> {
        Some((out, Audience::Everyone))
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be announced on a channel",
    label = "`broadcast` sends this function's return value, and listeners cannot receive this type",
    note = "`broadcast` announces the function's return value (the `Ok` value of a `Result`): derive `serde::Serialize` for it, or remove `broadcast`"
)]
pub trait Announceable: Serialize {}
impl<T: Serialize> Announceable for T {}

impl<T> NotAnnounced<T> {
    pub fn prepare<X>(
        self,
        _: &X,
        _: &Caller,
        _: fn(&Caller, &T) -> Audience,
    ) -> Option<(&'static (), Audience)>
    where
        T: Announceable,
    {
        None
    }

    pub fn prepare_everyone<X>(self, _: &X) -> Option<(&'static (), Audience)>
    where
        T: Announceable,
    {
        None
    }
}

/// Never implemented: its only use is the error below.
#[diagnostic::on_unimplemented(
    message = "a stream cannot be announced on a channel",
    label = "this function returns a stream, and `broadcast` announces one value when the function returns",
    note = "remove `broadcast`, and emit each item as the stream produces it (`ephaptic::emit(item)`, the item an `#[ephaptic::event]` type); or return the items collected, e.g. `Vec<T>`"
)]
pub trait AnnouncedStream {}

impl<S> StreamNotAnnounced<S> {
    pub fn prepare<X, A>(self, _: &X, _: &Caller, _: A) -> Option<(&'static (), Audience)>
    where
        S: AnnouncedStream,
    {
        None
    }

    pub fn prepare_everyone<X>(self, _: &X) -> Option<(&'static (), Audience)>
    where
        S: AnnouncedStream,
    {
        None
    }
}
