//! What an identity loader grants: an identity, and how long it holds ([`Expiring`]).

use std::time::{Duration, SystemTime};

use crate::identity::Identity;

/// An identity that holds until a moment: what an identity loader returns for a credential
/// that expires (a JWT's `exp`, a session's end). Before that moment the server asks a client
/// that can refresh (`@ephaptic/client`) for fresh credentials, runs the loader again on them
/// and keeps the connection when it names the same identity; otherwise, or without an answer
/// by then, the session ends (docs/AUTH.md, "Logging out and revoking").
///
/// ```
/// use std::time::Duration;
/// use ephaptic::Expiring;
///
/// #[ephaptic::identity_loader]
/// async fn load(token: Option<String>) -> Option<Expiring<String>> {
///     // A real loader checks a signature; this one trusts `user:<name>`.
///     let user = token?.strip_prefix("user:")?.to_owned();
///     Some(Expiring::after(user, Duration::from_secs(15 * 60)))
/// }
/// ```
///
/// A loader whose credentials only sometimes expire (API keys that do not, tokens that do)
/// returns [`Expiring::never`] for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring<I> {
    identity: I,
    expires_at: Option<SystemTime>,
}

impl<I> Expiring<I> {
    /// `identity` until `expires_at`.
    pub fn at(identity: I, expires_at: SystemTime) -> Self {
        Expiring {
            identity,
            expires_at: Some(expires_at),
        }
    }

    /// `identity` for the connection's whole life, as a loader returning `I` gives it.
    pub fn never(identity: I) -> Self {
        Expiring {
            identity,
            expires_at: None,
        }
    }

    /// Who the connection is.
    pub fn identity(&self) -> &I {
        &self.identity
    }

    /// When the grant ends; `None`: never.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Its identity and expiry.
    pub(crate) fn into_parts(self) -> (I, Option<SystemTime>) {
        (self.identity, self.expires_at)
    }

    /// `identity` for `ttl` from now (a `ttl` past what the clock can count: never).
    pub fn after(identity: I, ttl: Duration) -> Self {
        match SystemTime::now().checked_add(ttl) {
            Some(at) => Expiring::at(identity, at),
            None => Expiring::never(identity),
        }
    }

    /// `identity` until `exp`, in seconds since the Unix epoch (a JWT's `exp` claim; one past
    /// what the clock can count: never).
    pub fn at_unix(identity: I, exp: u64) -> Self {
        match SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(exp)) {
            Some(at) => Expiring::at(identity, at),
            None => Expiring::never(identity),
        }
    }
}

/// An identity loader's result as the runtime keeps it: the identity and when it expires.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Identity,
    pub expires: Option<SystemTime>,
}

impl Grant {
    /// A grant that never expires.
    pub fn forever(identity: Identity) -> Self {
        Grant {
            identity,
            expires: None,
        }
    }
}
