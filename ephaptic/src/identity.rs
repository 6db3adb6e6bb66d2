//! Who is on the other end of a connection.

use std::fmt;

use serde::{Serialize, Serializer};
use uuid::Uuid;

/// The identity of an authenticated connection, as the identity loader returned it.
///
/// Identities of different kinds never match each other: the integer `7` and the string `"7"`
/// are two users. All the connections of one identity (tabs, devices) are reached together by
/// `ephaptic::to(identity)`.
///
/// ```
/// use ephaptic::Identity;
///
/// assert_eq!(Identity::from(7u64), Identity::from(7i32));
/// assert_ne!(Identity::from(7), Identity::from("7"));
/// assert_eq!(Identity::from("alice").key(), "s:alice");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A string identity (a user name, an opaque id).
    Str(String),
    /// An integer identity. Every integer type converts into this one variant, so `7u64` and
    /// `7i32` are the same user.
    Int(i128),
    /// A boolean identity (rare, but the protocol allows it).
    Bool(bool),
    /// A UUID identity.
    Uuid(Uuid),
}

/// The longest identity a connection may have, in bytes of its key: an identity is kept per
/// connection, indexed, and (with Redis) names channels and rate-limit keys, so a loader that
/// passes a client's token through must not let that client choose its size.
pub(crate) const MAX_IDENTITY: usize = 1024;

impl Identity {
    /// Longer than any connection's identity may be ([`MAX_IDENTITY`]): nobody holds it, so
    /// `to(..)` such a target reaches no one and keeps nothing.
    pub(crate) fn too_long(&self) -> bool {
        self.as_str().is_some_and(|s| s.len() > MAX_IDENTITY)
    }

    /// The key that names this identity across servers (`s:alice`, `i:7`, `b:1`, `u:<uuid>`),
    /// as docs/PROTOCOL.md section 6 specifies.
    pub fn key(&self) -> String {
        match self {
            Identity::Str(s) => format!("s:{s}"),
            Identity::Int(i) => format!("i:{i}"),
            Identity::Bool(b) => format!("b:{}", u8::from(*b)),
            Identity::Uuid(u) => format!("u:{}", u.hyphenated()),
        }
    }

    /// The identity a [`key`](Self::key) names; also reads `n:<integer>`, the integer prefix
    /// the TypeScript reference server writes. `None` for anything else.
    ///
    /// ```
    /// use ephaptic::Identity;
    ///
    /// assert_eq!(Identity::from_key("i:7"), Some(Identity::from(7)));
    /// assert_eq!(Identity::from_key("n:7"), Some(Identity::from(7)));
    /// assert_eq!(Identity::from_key("s:7"), Some(Identity::from("7")));
    /// assert_eq!(Identity::from_key("x:7"), None);
    /// ```
    pub fn from_key(key: &str) -> Option<Identity> {
        let (kind, rest) = key.split_once(':')?;
        match kind {
            "s" => Some(Identity::Str(rest.to_owned())),
            "i" | "n" => rest.parse().ok().map(Identity::Int),
            "b" => match rest {
                "1" => Some(Identity::Bool(true)),
                "0" => Some(Identity::Bool(false)),
                _ => None,
            },
            "u" => rest.parse().ok().map(Identity::Uuid),
            _ => None,
        }
    }

    /// The string, if this is a string identity.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Identity::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer identity that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Identity::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Str(s) => fmt::Debug::fmt(s, f),
            Identity::Int(i) => fmt::Display::fmt(i, f),
            Identity::Bool(b) => fmt::Display::fmt(b, f),
            Identity::Uuid(u) => fmt::Display::fmt(u, f),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Str(s) => f.write_str(s),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

/// Sent as the value it holds: a string, an integer, a boolean, or a UUID string.
impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Identity::Str(v) => s.serialize_str(v),
            Identity::Int(v) => match i64::try_from(*v) {
                Ok(i) => s.serialize_i64(i),
                Err(_) => match u64::try_from(*v) {
                    Ok(u) => s.serialize_u64(u),
                    Err(_) => s.serialize_str(&v.to_string()),
                },
            },
            Identity::Bool(v) => s.serialize_bool(*v),
            Identity::Uuid(v) => s.collect_str(&v.hyphenated()),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Identity {
            fn from(v: $t) -> Self {
                Identity::Int(v as i128)
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl From<String> for Identity {
    fn from(v: String) -> Self {
        Identity::Str(v)
    }
}

impl From<&str> for Identity {
    fn from(v: &str) -> Self {
        Identity::Str(v.to_owned())
    }
}

impl From<&String> for Identity {
    fn from(v: &String) -> Self {
        Identity::Str(v.clone())
    }
}

impl From<bool> for Identity {
    fn from(v: bool) -> Self {
        Identity::Bool(v)
    }
}

impl From<Uuid> for Identity {
    fn from(v: Uuid) -> Self {
        Identity::Uuid(v)
    }
}

impl From<&Identity> for Identity {
    fn from(v: &Identity) -> Self {
        v.clone()
    }
}

/// In TypeScript an identity is whatever the loader returned: a string, number or boolean
/// (UUIDs travel as strings).
impl ts_rs::TS for Identity {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn name(_: &ts_rs::Config) -> String {
        "string | number | boolean".into()
    }

    fn inline(cfg: &ts_rs::Config) -> String {
        Self::name(cfg)
    }
}
