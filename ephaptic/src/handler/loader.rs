//! Identity loaders: what one may return, and how `init.auth` is decoded for it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::bind::Missing;
use super::defs::BoxFuture;
use crate::identity::Identity;

/// An identity loader, type-erased: the encoded `auth` in, the identity (or anonymous, or an
/// error text) out.
pub(crate) type DynLoader =
    Arc<dyn Fn(Option<Bytes>) -> BoxFuture<Result<Option<Identity>, String>> + Send + Sync>;

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
/// loader shim and by [`Server::identity_loader`].
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
