//! Identity loaders: what one may take and return, and how `init.auth` is decoded for it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::bind::Missing;
use super::defs::BoxFuture;
use crate::handshake::Handshake;
use crate::identity::Identity;

/// An identity loader, type-erased: the encoded `auth` and the upgrade request in, the
/// identity (or anonymous, or an error text) out.
pub(crate) type DynLoader = Arc<
    dyn Fn(Option<Bytes>, Handshake) -> BoxFuture<Result<Option<Identity>, String>> + Send + Sync,
>;

/// A function [`Server::identity_loader`](crate::Server::identity_loader) accepts: an async
/// function (or closure) of the client's `auth` (any `Deserialize` type; an `Option` also
/// accepts clients that send none), of `auth` and the [`Handshake`], or of the `Handshake`
/// alone. `M` tells the three apart; you never name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an identity loader",
    label = "takes the wrong parameters or returns the wrong type",
    note = "an identity loader is `async fn(auth: A)`, `async fn(auth: A, handshake: ephaptic::Handshake)` or `async fn(handshake: ephaptic::Handshake)`, where `A: Deserialize` (e.g. `Option<String>`); annotate the closure's parameter types",
    note = "it returns `Option<I>` or `Result<Option<I>, E>`, where `I` converts into an `ephaptic::Identity`"
)]
pub trait IdentityLoader<M>: Send + Sync + 'static {
    #[doc(hidden)]
    fn load(
        self: Arc<Self>,
        auth: Option<Bytes>,
        handshake: Handshake,
    ) -> BoxFuture<Result<Option<Identity>, String>>;
}

/// Which parameters an [`IdentityLoader`] takes; named only in the trait's impls.
#[doc(hidden)]
pub mod takes {
    use std::marker::PhantomData;

    #[derive(Debug)]
    pub struct Auth<A>(PhantomData<A>);
    #[derive(Debug)]
    pub struct AuthAndHandshake<A>(PhantomData<A>);
    #[derive(Debug)]
    pub struct Handshake;
}

impl<F, A, Fut> IdentityLoader<takes::Auth<A>> for F
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    A: DeserializeOwned + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: LoaderOutput,
{
    fn load(
        self: Arc<Self>,
        auth: Option<Bytes>,
        _: Handshake,
    ) -> BoxFuture<Result<Option<Identity>, String>> {
        run_loader(auth, move |a| self(a))
    }
}

impl<F, A, Fut> IdentityLoader<takes::AuthAndHandshake<A>> for F
where
    F: Fn(A, Handshake) -> Fut + Send + Sync + 'static,
    A: DeserializeOwned + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: LoaderOutput,
{
    fn load(
        self: Arc<Self>,
        auth: Option<Bytes>,
        handshake: Handshake,
    ) -> BoxFuture<Result<Option<Identity>, String>> {
        run_loader(auth, move |a| self(a, handshake))
    }
}

impl<F, Fut> IdentityLoader<takes::Handshake> for F
where
    F: Fn(Handshake) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: LoaderOutput,
{
    fn load(
        self: Arc<Self>,
        auth: Option<Bytes>,
        handshake: Handshake,
    ) -> BoxFuture<Result<Option<Identity>, String>> {
        // Whatever `auth` holds (or nothing) is accepted and ignored.
        run_loader(auth, move |_: Option<serde::de::IgnoredAny>| {
            self(handshake)
        })
    }
}

/// What an identity loader may return: `Option<I>` or `Result<Option<I>, E>`, where `I` is
/// anything that converts into an [`Identity`] (strings, integers, `bool`, `Uuid`).
#[diagnostic::on_unimplemented(
    message = "an identity loader must return `Option<I>` or `Result<Option<I>, E>`, not `{Self}`",
    note = "`I` is a string, an integer, a bool, a Uuid or an `ephaptic::Identity`; `None` means anonymous"
)]
pub trait LoaderOutput {
    /// The identity, `None` for anonymous, or the error text to log.
    fn into_identity(self) -> Result<Option<Identity>, String>;
}

impl<I: Into<Identity>> LoaderOutput for Option<I> {
    fn into_identity(self) -> Result<Option<Identity>, String> {
        Ok(self.map(Into::into))
    }
}

impl<I: Into<Identity>, E: fmt::Display> LoaderOutput for Result<Option<I>, E> {
    fn into_identity(self) -> Result<Option<Identity>, String> {
        self.map(|o| o.map(Into::into)).map_err(|e| e.to_string())
    }
}

/// Decodes `auth` as the loader's argument type and runs the loader. Used by the generated
/// loader shim and by [`Server::identity_loader`](crate::Server::identity_loader).
#[doc(hidden)]
pub fn run_loader<A, F, Fut>(
    auth: Option<Bytes>,
    loader: F,
) -> BoxFuture<Result<Option<Identity>, String>>
where
    A: DeserializeOwned + Send + 'static,
    F: FnOnce(A) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: LoaderOutput,
{
    Box::pin(async move {
        let arg = match &auth {
            Some(bytes) => {
                let mut de =
                    rmp_serde::Deserializer::from_read_ref(&bytes[..]).with_human_readable();
                de.set_max_depth(crate::wire::MAX_NESTING);
                match A::deserialize(&mut de) {
                    Ok(a) => a,
                    Err(e) => {
                        return Err(format!(
                            "`auth` does not match the loader's parameter type: {e}"
                        ));
                    }
                }
            }
            None => match A::deserialize(Missing) {
                Ok(a) => a,
                // The client sent no auth and the loader needs one: anonymous, not an error.
                Err(_) => return Ok(None),
            },
        };
        loader(arg).await.into_identity()
    })
}
