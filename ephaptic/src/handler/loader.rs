//! Identity loaders: what one may take and return, and how `init.auth` is decoded for it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::bind::Missing;
use super::defs::BoxFuture;
use super::grant::{Expiring, Grant};
use crate::handshake::Handshake;
use crate::identity::Identity;

/// An identity loader, type-erased: the encoded `auth` and the upgrade request in, the
/// identity and its expiry (or anonymous, or an error text) out.
pub(crate) type DynLoader =
    Arc<dyn Fn(Option<Bytes>, Handshake) -> BoxFuture<Result<Option<Grant>, String>> + Send + Sync>;

/// A function [`Server::identity_loader`](crate::Server::identity_loader) accepts: an async
/// function (or closure) of the client's `auth` (any `Deserialize` type; an `Option` also
/// accepts clients that send none), of `auth` and the [`Handshake`], or of the `Handshake`
/// alone. `M` tells the three apart; you never name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an identity loader",
    label = "takes the wrong parameters or returns the wrong type",
    note = "an identity loader is `async fn(auth: A)`, `async fn(auth: A, handshake: ephaptic::Handshake)` or `async fn(handshake: ephaptic::Handshake)`, where `A: Deserialize` (e.g. `Option<String>`); annotate the closure's parameter types",
    note = "it returns `Option<I>` or `Result<Option<I>, E>`, where `I` converts into an `ephaptic::Identity` (or is an `ephaptic::Expiring<I>`)"
)]
pub trait IdentityLoader<M>: Send + Sync + 'static {
    #[doc(hidden)]
    fn load(
        self: Arc<Self>,
        auth: Option<Bytes>,
        handshake: Handshake,
    ) -> BoxFuture<Result<Option<Grant>, String>>;
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
    ) -> BoxFuture<Result<Option<Grant>, String>> {
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
    ) -> BoxFuture<Result<Option<Grant>, String>> {
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
    ) -> BoxFuture<Result<Option<Grant>, String>> {
        // Whatever `auth` holds (or nothing) is accepted and ignored.
        run_loader(auth, move |_: Option<serde::de::IgnoredAny>| {
            self(handshake)
        })
    }
}

/// What an identity loader may return: `Option<I>` or `Result<Option<I>, E>`, where `I` is
/// an [`IntoIdentity`] (strings, integers, `bool`, `Uuid`, [`Identity`]), or an
/// [`Expiring<I>`](crate::Expiring) for credentials that expire.
#[diagnostic::on_unimplemented(
    message = "an identity loader must return `Option<I>` or `Result<Option<I>, E>`, not `{Self}`",
    note = "`I` is a string, an integer, a bool, a Uuid or an `ephaptic::Identity` (or `ephaptic::Expiring<I>` for credentials that expire); `None` means anonymous"
)]
pub trait LoaderOutput {
    /// The identity, `None` for anonymous, or the error text to log.
    fn into_identity(self) -> Result<Option<Identity>, String>;

    /// The identity with its expiry; without one, unless the output is an `Expiring`.
    #[doc(hidden)]
    fn into_grant(self) -> Result<Option<Grant>, String>
    where
        Self: Sized,
    {
        Ok(self.into_identity()?.map(Grant::forever))
    }
}

/// What an identity loader's `Some(..)` may hold: a string, an integer, a `bool`, a `Uuid` or
/// an [`Identity`]. Implement it for an id newtype of your own to return that directly.
///
/// ```
/// struct UserId(u64);
///
/// impl ephaptic::IntoIdentity for UserId {
///     fn into_identity(self) -> ephaptic::Identity {
///         self.0.into()
///     }
/// }
///
/// #[ephaptic::identity_loader]
/// async fn load(token: Option<String>) -> Option<UserId> {
///     token.map(|t| UserId(t.len() as u64))
/// }
/// ```
// Its own trait (not `Into<Identity>`), so that a loader returning a user struct is told what
// an identity is, not shown every `From` impl of `Identity`.
#[diagnostic::on_unimplemented(
    message = "an identity is a string, an integer, a bool or a UUID: return one of those (for example the user's id), or `ephaptic::Identity`",
    label = "`{Self}` is not one of those"
)]
pub trait IntoIdentity {
    /// The connection's identity.
    fn into_identity(self) -> Identity;
}

macro_rules! into_identity {
    ($($t:ty),*) => {$(
        impl IntoIdentity for $t {
            fn into_identity(self) -> Identity {
                Identity::from(self)
            }
        }
    )*};
}
into_identity!(
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    isize,
    usize,
    String,
    &str,
    &String,
    bool,
    uuid::Uuid,
    &Identity
);

impl IntoIdentity for Identity {
    fn into_identity(self) -> Identity {
        self
    }
}

impl<I: IntoIdentity> LoaderOutput for Option<I> {
    fn into_identity(self) -> Result<Option<Identity>, String> {
        Ok(self.map(IntoIdentity::into_identity))
    }
}

impl<I: IntoIdentity, E: fmt::Display> LoaderOutput for Result<Option<I>, E> {
    fn into_identity(self) -> Result<Option<Identity>, String> {
        self.map(|o| o.map(IntoIdentity::into_identity))
            .map_err(|e| e.to_string())
    }
}

/// The grant an [`Expiring`] identity makes.
fn grant_of<I: IntoIdentity>(expiring: Expiring<I>) -> Grant {
    let (identity, expires) = expiring.into_parts();
    Grant {
        identity: identity.into_identity(),
        expires,
    }
}

impl<I: IntoIdentity> LoaderOutput for Option<Expiring<I>> {
    fn into_identity(self) -> Result<Option<Identity>, String> {
        Ok(self.into_grant()?.map(|g| g.identity))
    }

    fn into_grant(self) -> Result<Option<Grant>, String> {
        Ok(self.map(grant_of))
    }
}

impl<I: IntoIdentity, E: fmt::Display> LoaderOutput for Result<Option<Expiring<I>>, E> {
    fn into_identity(self) -> Result<Option<Identity>, String> {
        Ok(self.into_grant()?.map(|g| g.identity))
    }

    fn into_grant(self) -> Result<Option<Grant>, String> {
        self.map(|o| o.map(grant_of)).map_err(|e| e.to_string())
    }
}

/// Decodes `auth` as the loader's argument type and runs the loader. Used by the generated
/// loader shim and by [`Server::identity_loader`](crate::Server::identity_loader).
#[doc(hidden)]
pub fn run_loader<A, F, Fut>(
    auth: Option<Bytes>,
    loader: F,
) -> BoxFuture<Result<Option<Grant>, String>>
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
        loader(arg).await.into_grant()
    })
}
